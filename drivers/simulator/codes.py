"""Final result codes a modem gives for failures: +CME ERROR and +CMS ERROR with their texts.

Pure tables, no I/O. Codes and verbose texts from 3GPP TS 27.007 section 9.2 (+CME ERROR) and
3GPP TS 27.005 section 3.2.5 (+CMS ERROR).
"""

from __future__ import annotations

import enum


class CmeError(enum.IntEnum):
    """Mobile equipment errors (TS 27.007 section 9.2.1)."""

    PHONE_FAILURE = 0
    OPERATION_NOT_ALLOWED = 3
    OPERATION_NOT_SUPPORTED = 4
    SIM_NOT_INSERTED = 10
    SIM_PIN_REQUIRED = 11
    SIM_PUK_REQUIRED = 12
    SIM_FAILURE = 13
    SIM_BUSY = 14
    INCORRECT_PASSWORD = 16
    NO_NETWORK_SERVICE = 30
    UNKNOWN = 100


CME_TEXT: dict[CmeError, str] = {
    CmeError.PHONE_FAILURE: "phone failure",
    CmeError.OPERATION_NOT_ALLOWED: "operation not allowed",
    CmeError.OPERATION_NOT_SUPPORTED: "operation not supported",
    CmeError.SIM_NOT_INSERTED: "SIM not inserted",
    CmeError.SIM_PIN_REQUIRED: "SIM PIN required",
    CmeError.SIM_PUK_REQUIRED: "SIM PUK required",
    CmeError.SIM_FAILURE: "SIM failure",
    CmeError.SIM_BUSY: "SIM busy",
    CmeError.INCORRECT_PASSWORD: "incorrect password",
    CmeError.NO_NETWORK_SERVICE: "no network service",
    CmeError.UNKNOWN: "unknown",
}


class CmsError(enum.IntEnum):
    """Message service failures (TS 27.005 section 3.2.5)."""

    ME_FAILURE = 300
    OPERATION_NOT_ALLOWED = 302
    OPERATION_NOT_SUPPORTED = 303
    INVALID_PDU_MODE_PARAMETER = 304
    SIM_PIN_REQUIRED = 311
    SIM_BUSY = 314
    SIM_PUK_REQUIRED = 316
    INVALID_MEMORY_INDEX = 321
    MEMORY_FULL = 322
    NO_NETWORK_SERVICE = 331
    NO_CNMA_EXPECTED = 340
    UNKNOWN_ERROR = 500


CMS_TEXT: dict[CmsError, str] = {
    CmsError.ME_FAILURE: "ME failure",
    CmsError.OPERATION_NOT_ALLOWED: "operation not allowed",
    CmsError.OPERATION_NOT_SUPPORTED: "operation not supported",
    CmsError.INVALID_PDU_MODE_PARAMETER: "invalid PDU mode parameter",
    CmsError.SIM_PIN_REQUIRED: "SIM PIN required",
    CmsError.SIM_BUSY: "SIM busy",
    CmsError.SIM_PUK_REQUIRED: "SIM PUK required",
    CmsError.INVALID_MEMORY_INDEX: "invalid memory index",
    CmsError.MEMORY_FULL: "memory full",
    CmsError.NO_NETWORK_SERVICE: "no network service",
    CmsError.NO_CNMA_EXPECTED: "no +CNMA acknowledgement expected",
    CmsError.UNKNOWN_ERROR: "unknown error",
}
