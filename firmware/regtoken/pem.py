# TLS, imported only for an https api_url: the CA certificates of a verified one, PEM
# decoded to DER (mbedTLS here takes DER), and the TLS context wire.Wire wraps sockets in.
from binascii import a2b_base64

from .error import ConfigError


def ca_file(cfg):
    """The ca_file's certificates as a list of DER blobs; ConfigError if it holds none."""
    try:
        with open(cfg["ca_file"], "rb") as f:
            ca = f.read()
    except OSError:
        ca = b""
    ca = der(ca) if b"-----BEGIN" in ca else [ca] if ca else ()
    if not ca:
        raise ConfigError("%s: 'ca_file' holds no certificate" % cfg["_from"])
    return ca


def der(ca):
    """Every certificate in PEM text, as a list of DER blobs."""
    out = []
    for s in ca.split(b"-----BEGIN CERTIFICATE")[1:]:
        s = s.split(b"-----END")
        if len(s) > 1:  # a2b_base64 passes by what is no base64: the BEGIN line's end, CR LF
            out.append(a2b_base64(s[0]))
    return out


def context(ca):
    """The TLS context of a client: it checks the server against `ca` (DER blobs), or
    checks nothing (None). One per client, made at boot: it is ~3 KB of heap in one piece,
    which a fragmented heap may no longer have, and the certificates are parsed once."""
    import tls

    ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = tls.CERT_NONE if ca is None else tls.CERT_REQUIRED  # type: ignore
    for d in ca or ():
        ctx.load_verify_locations(d)
    return ctx
