"""The pure wire shapes of callbacks (spec 3.2-3.3, 4.2-4.3), the HMAC signature, and the
callback keys of the configuration, including the commented example in config.example.toml."""

from __future__ import annotations

import hashlib
import hmac
import json
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from xml.etree import ElementTree

from hypothesis import given
from hypothesis import strategies as st

from edgegw.config import check_config, load_config
from edgegw.delivery.payload import (
    CallbackKind,
    DrReport,
    MoReport,
    encode_json_batch,
    encode_xml_batch,
    placeholders,
    render_template,
    sign,
)

ROOT = Path(__file__).resolve().parent.parent.parent


def mo(**overrides: Any) -> MoReport:
    fields: dict[str, Any] = {
        "messageid": "7a02c0000f00",
        "serviceid": 123,
        "servicename": "Test",
        "sno": "1960",
        "originator": "+4799999999",
        "mcc": 242,
        "mnc": 1,
        "content": "KODE hei",
        "command": "KODE",
        "strippedcontent": "hei",
        "timestamp": "20140206 11:45:33",
        "sctimestamp": "20140206 11:45:33",
    }
    fields.update(overrides)
    return MoReport(**fields)


def dr() -> DrReport:
    return DrReport(
        messageid="6y034000cy00",
        customerbatchreference="MyBatch001",
        customermessagereference="MyRef123",
        serviceid=123,
        servicename="Test",
        mcc=242,
        mnc=1,
        statuscode=0,
        statusdescription="OK. Message processed successfully.",
        extstatuscode="0",
        extstatusdescription="Delivered",
        originator="Acme",
    )


def test_json_equals_the_spec_examples() -> None:
    # Spec 3.3 and 4.3, the documented examples.
    assert json.loads(encode_json_batch(CallbackKind.MO, [mo()])) == {
        "mo": [
            {
                "messageid": "7a02c0000f00",
                "serviceid": 123,
                "servicename": "Test",
                "sno": "1960",
                "originator": "+4799999999",
                "mcc": 242,
                "mnc": 1,
                "content": "KODE hei",
                "command": "KODE",
                "strippedcontent": "hei",
                "type": 1,
                "timestamp": "20140206 11:45:33",
                "sctimestamp": "20140206 11:45:33",
                "sessionid": "",
            }
        ]
    }
    assert encode_json_batch(CallbackKind.DR, [dr()]) == (
        b'{"dr":[{"messageid":"6y034000cy00","customerbatchreference":"MyBatch001",'
        b'"customermessagereference":"MyRef123","serviceid":123,"servicename":"Test","mcc":242,'
        b'"mnc":1,"type":6,"statuscode":0,"statusdescription":"OK. Message processed '
        b'successfully.","extstatuscode":"0","extstatusdescription":"Delivered"}]}'
    )


def test_xml_dr_equals_the_spec_example_without_its_line_breaks() -> None:
    assert encode_xml_batch(CallbackKind.DR, [dr()]) == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b"<dr><message><messageid>6y034000cy00</messageid>"
        b"<customerbatchreference>MyBatch001</customerbatchreference>"
        b"<customermessagereference>MyRef123</customermessagereference><serviceid>123</serviceid>"
        b"<servicename>Test</servicename><mcc>242</mcc><mnc>1</mnc><type>6</type>"
        b"<statuscode>0</statuscode><statusdescription>OK. Message processed successfully."
        b"</statusdescription><extstatuscode>0</extstatuscode>"
        b"<extstatusdescription>Delivered</extstatusdescription></message></dr>"
    )


def test_several_items_share_one_body() -> None:
    body = encode_xml_batch(CallbackKind.MO, [mo(), mo(messageid="second")])
    root = ElementTree.fromstring(body)
    assert [m.findtext("messageid") for m in root.findall("message")] == [
        "7a02c0000f00",
        "second",
    ]
    assert root.find("message/sessionid") is not None
    assert root.findtext("message/sessionid") in ("", None)


@given(st.text(), st.text())
def test_any_text_survives_json_xml_and_the_get_template(content: str, session: str) -> None:
    content = "".join(c for c in content if c.isprintable() and not 0xD800 <= ord(c) < 0xE000)
    report = mo(content=content, sessionid=session.replace("\x00", ""))
    (item,) = json.loads(encode_json_batch(CallbackKind.MO, [report]))["mo"]
    assert item["content"] == content
    root = ElementTree.fromstring(encode_xml_batch(CallbackKind.MO, [report]))
    assert (root.findtext("message/content") or "") == content
    assert (root.findtext("message/sessionid") or "") == "".join(
        c if c in "\t\n\r" or ord(c) >= 0x20 else "\ufffd" for c in report.sessionid
    )
    url = render_template("http://c.test/mo?c=[content]&s=[SESSIONID]", placeholders(report))
    query = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    assert query["c"] == content
    assert query["s"] == report.sessionid
    assert " " not in url and "&c=" not in url.split("?", 1)[1][1:]


def test_template_placeholders_vas_unknown_and_raw_mode() -> None:
    values = placeholders(mo())
    template = "[messageID]|[commandtype]|[di_lastname]|[msisdn_cc]|[nope]|[content]|[x"
    assert render_template(template, values) == "7a02c0000f00|||||KODE%20hei|[x"
    assert render_template("[content] from [originator]", values, encode=False) == (
        "KODE hei from +4799999999"
    )
    assert render_template("[originator]", placeholders(dr())) == "Acme"


def test_signature_is_hmac_sha256_over_time_dot_payload() -> None:
    header = sign(b"k", 1700000000, b'{"dr":[]}')
    digest = hmac.new(b"k", b'1700000000.{"dr":[]}', hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={digest}"


def example_with_callbacks() -> dict[str, Any]:
    """config.example.toml with its commented callback example switched on."""
    lines = []
    in_example = False
    for line in (ROOT / "config.example.toml").read_text(encoding="utf-8").splitlines():
        if line == "# [services.dr]":
            in_example = True
        if in_example and not line.startswith("#"):
            in_example = False
        if in_example and line.startswith("# ") and not line.startswith("#  "):
            line = line[2:]
        elif in_example:
            line = ""
        lines.append(line)
    return tomllib.loads("\n".join(lines))


def test_the_commented_example_parses_once_enabled() -> None:
    raw = example_with_callbacks()
    service = raw["services"][0]
    assert set(service) >= {"dr", "mo", "mo_email"}
    assert check_config(raw) == ["services[0].mo_email: MO by email needs smtp_relay.host"]
    raw["smtp_relay"]["host"] = "relay.example"
    assert check_config(raw) == []


def test_callback_keys_are_checked() -> None:
    raw = example_with_callbacks()
    raw["smtp_relay"]["host"] = "relay.example"
    dr_keys = raw["services"][0]["dr"]
    dr_keys.update(url="ftp://x", interval=0.5, batch_max=0, retry_max=1.0, color="red")
    assert check_config(raw) == [
        "services[0].dr.color: unknown key (known: batch_max, ca_file, format, give_up_after,"
        " headers, hmac_key, interval, method, oauth2, password, retry_initial, retry_max,"
        " timeout, url, username, verify)"
    ]
    del dr_keys["color"]
    assert check_config(raw) == [
        "services[0].dr.url: must be an http:// or https:// URL",
        "services[0].dr.interval: the spec allows at most one request per second",
        "services[0].dr.retry_max: must be at least retry_initial",
        "services[0].dr.batch_max: must be at least 1",
    ]


def test_a_relative_ca_file_resolves_against_the_config_folder(tmp_path: Path) -> None:
    config_file = tmp_path / "conf" / "edgegw.toml"
    config_file.parent.mkdir()
    text = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    text = text.replace(
        "[[modems]]",
        '[services.dr]\nurl = "https://c.test/dr"\nca_file = "certs/ca.pem"\n\n'
        '[services.mo]\nurl = "https://c.test/mo"\nca_file = "/etc/ssl/ca.pem"\n\n[[modems]]',
        1,
    )
    config_file.write_text(text, encoding="utf-8")
    (service,) = load_config(config_file).services
    assert service.dr is not None and service.mo is not None
    assert service.dr.ca_file == str(tmp_path / "conf" / "certs" / "ca.pem")
    assert service.mo.ca_file == "/etc/ssl/ca.pem"
    assert service.dr.verify and service.dr.timeout == 60.0
