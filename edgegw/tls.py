"""The server-side TLS context of the SMPP and SMTP doors, from the config's PEM files. Reads
only those files; says which one it could not read, since `ssl` names none."""

from __future__ import annotations

import ssl

__all__ = ["server_context"]


def server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A context serving `cert_file` with `key_file`. A file that cannot be read is an OSError
    naming it (`load_cert_chain`'s own names no file); one that is no PEM, `ssl.SSLError`."""
    for path in filter(None, (cert_file, key_file)):
        with open(path, "rb"):
            pass
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context
