# TLS, imported only for an https api_url: the CA certificates of a verified one, PEM
# decoded to DER (mbedTLS here takes DER), and the TLS context wire.Wire wraps sockets in.
from binascii import a2b_base64

from .error import ConfigError


def ca_file(cfg):
    """The ca_file's certificates as a list of DER blobs; ConfigError if it holds none."""
    ca = None
    why = "is no file of at most 16 KB (a device needs a few certificates)"
    try:
        with open(cfg["ca_file"], "rb") as f:
            # bounded before it is read whole: a MemoryError is the heap's shortage, not
            # the config's fault (a board boots again), but a bundle this big always fails
            if f.seek(0, 2) <= 16384:
                f.seek(0)
                ca = f.read()
                why = "holds no certificate"
                ca = der(ca) if b"-----BEGIN" in ca else _split(ca)
    except OSError:
        why = "cannot be read"
    except ValueError:  # PEM whose base64 is cut short (a2b_base64: incorrect padding)
        why, ca = "has broken base64", None
    if not ca:
        raise ConfigError("%s: 'ca_file' %s" % (cfg["_from"], why))
    return ca


def _split(ca):
    """DER certificates one after another (each a SEQUENCE: 0x30, its length, its
    content) as a list of DER blobs. What follows the last one is one more blob, for
    mbedTLS to refuse, unless it is only white space (a newline an editor added)."""
    out = []
    i = 0
    while i + 2 <= len(ca) and ca[i] == 48:  # "0": 0x30
        n, h = ca[i + 1], 2
        if n > 128:  # long form: the length in the next n - 128 bytes
            h += n - 128
            n = 0
            for x in ca[i + 2:i + h]:
                n = n * 256 + x
        if i + h + n > len(ca):
            break
        out.append(ca[i:i + h + n])
        i += h + n
    if ca[i:].strip():
        out.append(ca[i:])
    return out


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
