"""The configured identity a scan looks for (the scan itself runs over real ptys in
test_at_discovery.py)."""

from __future__ import annotations

from drivers.at.locate import Identity


def test_only_configured_fields_are_checked() -> None:
    assert Identity().mismatch("anything", "anything") == ""
    assert not Identity().wanted
    imei = Identity(imei="356938035643809")
    assert imei.mismatch("356938035643809", "") == ""
    assert imei.mismatch("490154203237518", "") == (
        "IMEI 490154203237518 is not the configured 356938035643809"
    )
    assert imei.mismatch("", "") == "IMEI unknown is not the configured 356938035643809"


def test_iccid_compares_without_the_padding_f_and_case() -> None:
    iccid = Identity(iccid="8947080012345678901f")
    assert iccid.mismatch("", "8947080012345678901") == ""
    assert "is not the configured" in iccid.mismatch("", "8947080099887766554")


def test_identity_names_what_is_wanted() -> None:
    assert str(Identity(imei="1", iccid="2")) == "IMEI 1 and ICCID 2"
    assert str(Identity(iccid="2")) == "ICCID 2"
