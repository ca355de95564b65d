"""The one error of the AT codecs: the modem sent something that cannot be AT (remote garbage).

Pure: no I/O. Raised by the framer (`drivers.at.framer`) and the response parsers
(`drivers.at.commands`); the driver treats it as a broken link and recovers.
"""

from __future__ import annotations


class AtProtocolError(Exception):
    """The modem's bytes break the AT syntax of 3GPP TS 27.007 section 4 / TS 27.005 section 3."""
