"""edgegw: an SMS edge gateway that speaks the Puzzel SMSGW API in front of USB GSM modems."""

__version__ = "0.1.0"
