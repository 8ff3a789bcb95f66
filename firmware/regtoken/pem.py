# TLS, imported only for an https api_url: the CA certificates of a verified one, PEM
# decoded to DER (mbedTLS here takes DER), and the socket wrapped by wire.Wire.
from binascii import a2b_base64

from .error import ConfigError


def ca_file(cfg):
    """The ca_file's certificates as a list of DER blobs; ConfigError if it holds none."""
    try:
        with open(cfg["ca_file"], "rb") as f:
            ca = f.read()
    except OSError:
        ca = b""
    ca = der(ca) if b"-----BEGIN" in ca else [ca] if ca else []
    if not ca:
        raise ConfigError("%s: 'ca_file' holds no certificate" % cfg.get("_from", "config"))
    return ca


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


def wrap(s, host, ca):
    import tls

    ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = tls.CERT_NONE if ca is None else tls.CERT_REQUIRED  # type: ignore
    for der in ca or ():
        ctx.load_verify_locations(der)
    return ctx.wrap_socket(s, server_hostname=host, do_handshake_on_connect=False)
