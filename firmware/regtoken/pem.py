# PEM -> DER, imported only when a ca_file is PEM text (mbedTLS here takes DER).
from binascii import a2b_base64


def der(data):
    """Every certificate in PEM text, as a list of DER blobs."""
    out: list = []
    b64: list | None = None
    for line in data.split(b"\n"):
        line = line.strip()
        if line.startswith(b"-----BEGIN CERTIFICATE"):
            b64 = []
        elif line.startswith(b"-----END CERTIFICATE") and b64 is not None:
            out.append(a2b_base64(b"".join(b64)))
            b64 = None
        elif b64 is not None:
            b64.append(line)
    return out
