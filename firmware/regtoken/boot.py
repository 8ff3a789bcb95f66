# What a Refresher does when it is built, and again after a 410: its transport, the
# refresh call's fixed parts, the stored record (or the initial token, imported), a clock
# floor for TLS, and the first state. Imported by Refresher._boot and let go after it has
# run.
from . import policy, wire
from .edges import redact
from .error import ConfigError
from .machine import BACKOFF, HEALTHY, PROVISION
from .policy import FORBIDDEN, GONE, RELEASED, iso
from .store import NEVER, UNKNOWN, Record, fingerprint


def boot(r):
    cfg, c, log = r._cfg, r._clock, r._log
    u = cfg["api_url"]
    https = u[:6] == "https:"
    # at every boot (state None: not again after a 410), http too: the config is one step
    # from https
    if r.state is None:
        if not cfg["tls_verify"]:
            log("WARNING: tls_verify is false: the server is not checked")
        if cfg["reprovision"] and not cfg["provisioning_token"]:  # the contract's rule: off
            log("WARNING: reprovision needs a provisioning_token")
    if not r._http:
        if cfg["transport"] == "wire":
            w = r._http = wire.Wire(cfg["timeout_s"])
            if https:  # TLS code only for https: off the heap of http
                import sys

                from . import pem

                # the context now, in the ~3 KB piece the config check kept for it; then
                # pem is let go like this module: the context is all the client needs
                ca = pem.ca_file(cfg) if cfg["tls_verify"] else None
                wire._room = None  # freed: the context's allocation finds the piece
                try:
                    w.ctx = pem.context(ca)
                except ValueError as e:  # mbedTLS refused a certificate: the config's fault
                    raise ConfigError("%s: 'ca_file' holds no valid certificate (%s)" % (
                        cfg["_from"], e))
                sys.modules.pop(pem.__name__)
                delattr(sys.modules[__name__.rpartition(".")[0]], "pem")
        else:
            from .ureq import Urequests

            r._http = Urequests(cfg["timeout_s"])
    # the buffer kept for the first Wire: it has it now, or none comes; the room for a TLS
    # context: it has been used, or no context is made
    wire._spare = wire._room = None
    # the refresh call's URL and headers never change: built once, not per call
    h = {"Content-Type": "application/json"}
    r._put = u + "/devices/registration-tokens/refresh", h
    if cfg["provisioning_token"]:
        h["Authorization"] = "DeviceToken " + cfg["provisioning_token"]
    d = cfg["store_dir"]
    isdir = 1
    if d:  # a folder that is not there (a card not mounted, a typo) is said once, by name;
        import os  # the device makes none, and stays in provision: the store is unknown,
        # not empty, and an initial token imported anew would be presented beside the
        # lineage on the missing card (a 200 for it revokes that one's token)

        try:
            isdir = os.stat(d)[0] & 0x4000  # S_IFDIR
        except OSError:
            isdir = 0
        if not isdir:
            d = "store_dir %s is not a directory" % d
            log("WARNING: " + d)
    rec = r._store.load()
    if not c.trusted:
        # TLS needs a plausible clock before NTP or a Date header corrects it: the newest
        # time known to have passed (the last commit, else the release). Before an import,
        # whose commit time is the next floor (an RTC at 2000 stamped it 2000)
        t = max(rec.at if rec else 0, RELEASED)
        if c.now() < t:
            c.set(t)  # the clock edge's one documented argument; still not trusted
            c.trusted = False
            log("clock: unset, moved forward to " + iso(t))
    init = isdir and cfg["initial_token"]
    # import into an empty store, or over a token that is no longer valid (refused, or
    # expired by a clock we trust) from another provisioning: never its own lineage's again
    if init and (rec is None or (rec.due < 0 or c.trusted and type(rec.exp) is int
                                 and rec.exp <= c.now()) and rec.seed != fingerprint(init)):
        exp = cfg.get("initial_expiration", UNKNOWN)
        rec = Record(init, NEVER if exp is None else exp, 0, fingerprint(init))
        if type(exp) is int:
            rec.due = r._due(c.now(), exp)
        log("import: initial token " + redact(init))
        r._commit(rec)
    r._use(rec)
    now = c.now()
    try:
        if not isdir:
            r._set(PROVISION, None, d, "store")
        elif rec is None or rec.why.endswith("empty"):  # or an operation (selfprov.py)
            r._need("no token", "empty")  # begun on an empty store: no 410 came
        elif rec.due < 0:
            r._need("410: provision this device", GONE)
        elif rec.due > now and rec.why != "-":  # "-": no hold (store.py's Record)
            # a hold the server set (a 403's, or a Retry-After's), kept by an unset clock
            # too: moved to at least the hold's start (its commit), it waits the rest of
            # the hold or longer, never less
            r._set(FORBIDDEN if rec.why == FORBIDDEN else BACKOFF, rec.due, rec.why + " hold",
                   rec.why)
        elif rec.exp != NEVER and not c.trusted:
            r._set(HEALTHY, now, "clock unknown: refresh at once")  # for the Date header
        elif rec.due > now:
            r._set(HEALTHY, rec.due, "scheduled")
        elif rec.exp == UNKNOWN:
            r._set(HEALTHY, now, "imported")
        elif rec.due == 0:
            r._set(HEALTHY, None, "never expires")
        elif rec.exp == NEVER:  # never expires, and a retry was due (a 403 hold that ended)
            r._set(HEALTHY, now, "retry")
        else:
            # off past its refresh point: spread a fleet that powers up together
            r._set(HEALTHY, now + policy.boot_delay(now, rec.exp, r._rand()), "overdue")
    except Exception as e:  # a record this code cannot place must not stop every boot
        log("boot: %s: %s" % (type(e).__name__, e))
        r._set(HEALTHY if r.token else BACKOFF, now, "refresh at once", "error")
