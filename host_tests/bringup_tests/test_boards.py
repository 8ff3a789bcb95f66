"""The board folders and the host tools that need no board: board.json checks, the flash
dry run (checked by esptool's own parser), provisioning input checks, the deploy plan, and
package.json / manifest.py covering every module of firmware/regtoken/."""

from __future__ import annotations

import importlib
import json
import os
import re
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest
from bringup import boards, deploy, flash, provision

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
TOKEN = "AbCdEf" + "x" * 242  # 248 characters, like the platform's


def make(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=300, env={**os.environ, **(env or {})},
                          stdin=subprocess.DEVNULL)


# ---------------------------------------------------------------- boards/


@pytest.mark.parametrize("name,chip,offset,arch", [
    ("esp32", "esp32", 0x1000, "xtensawin"),
    ("esp32s3", "esp32s3", 0x0, "xtensawin"),
    ("esp32c3", "esp32c3", 0x0, "rv32imc"),
    ("rp2-pico-w", None, None, "armv6m"),
    ("unix", None, None, "x64"),
])
def test_board_facts(name: str, chip: str | None, offset: int | None, arch: str) -> None:
    b = boards.load(name)
    assert (b.chip, b.flash_offset, b.mpy_arch) == (chip, offset, arch)
    assert b.stubs.endswith("==1.29.0.post1")


def test_every_board_folder_loads() -> None:
    names = boards.known()
    assert {"esp32", "esp32s3", "esp32c3", "rp2-pico-w", "unix"} <= set(names)
    for name in names:
        boards.load(name)


def test_unknown_board_lists_the_known_ones() -> None:
    with pytest.raises(boards.BoardError, match="unknown board 'esp8266'; known boards: esp32"):
        boards.load("esp8266")


@pytest.mark.parametrize("change,message", [
    ({"chip": "esp99"}, "'chip' must be an esptool chip"),
    ({"flash_offset": "4096"}, "'flash_offset' must be a hex string"),
    ({"mpy_arch": "arm"}, "'mpy_arch' must be an mpy-cross -march value"),
    ({"firmware": "ESP32_GENERIC-v1.29.0.uf2"}, "'firmware' must be a MicroPython .bin"),
    ({"led": {"pin": 2, "colour": "red"}}, "'led' has unknown keys colour"),
    ({"name": "esp32x"}, "'name' must equal the folder name"),
    ({"stubs": "micropython-esp32-stubs"}, "'stubs' must be a pinned requirement"),
])
def test_bad_board_json_is_named(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    raw = json.loads((boards.BOARDS_DIR / "esp32" / "board.json").read_text())
    raw.update(change)
    folder = tmp_path / "esp32"
    folder.mkdir()
    (folder / "README.md").write_text("notes")
    with pytest.raises(boards.BoardError, match=re.escape(message)):
        boards.parse(raw, folder)


def test_make_help_lists_the_board_targets() -> None:
    out = make("help").stdout
    for target in ("flash", "deploy", "provision", "repl", "logs", "board-info", "erase-token",
                   "typecheck-firmware", "virtual-board"):
        assert re.search(r"^  %s\s" % target, out, re.M), target


# ---------------------------------------------------------------- flash


def esp_image(path: Path, chip_id: int) -> Path:
    head = bytearray(8192)
    head[0], head[1] = 0xE9, 3  # magic, segment count
    struct.pack_into("<H", head, 12, chip_id)  # extended header: chip id
    path.write_bytes(bytes(head))
    return path


def uf2_image(path: Path, family: int) -> Path:
    block = struct.pack("<IIIIIIII", 0x0A324655, 0x9E5D5157, 0x2000, 0x10000000, 256, 0, 1,
                        family) + bytes(476) + struct.pack("<I", 0x0AB16F30)
    path.write_bytes(block)
    return path


def test_flash_dry_run_prints_the_esptool_commands_and_checks_them(tmp_path: Path) -> None:
    fw = esp_image(tmp_path / "ESP32_GENERIC-v1.29.0.bin", chip_id=0)
    p = make("flash", "BOARD=esp32", "PORT=/dev/ttyUSB7", "FIRMWARE=%s" % fw, "DRY_RUN=1")
    assert p.returncode == 0, p.stderr
    esptool = BIN / "esptool"
    assert p.stdout.splitlines()[:3] == [
        "%s --chip esp32 --port /dev/ttyUSB7 erase-flash" % esptool,
        "%s --chip esp32 --port /dev/ttyUSB7 --baud 460800 write-flash 0x1000 %s" % (esptool, fw),
        "esptool accepts both commands (parsed by esptool itself; no port opened)",
    ]


def test_flash_baud_overrides_the_boards(tmp_path: Path) -> None:
    fw = esp_image(tmp_path / "ESP32_GENERIC-v1.29.0.bin", chip_id=0)
    p = make("flash", "BOARD=esp32", "PORT=/dev/ttyUSB7", "FIRMWARE=%s" % fw, "DRY_RUN=1",
             "BAUD=115200")
    assert p.returncode == 0, p.stderr
    assert "--baud 115200 write-flash 0x1000" in p.stdout and "460800" not in p.stdout
    p = make("flash", "BOARD=esp32", "FIRMWARE=%s" % fw, "DRY_RUN=1", "BAUD=fast")
    assert p.returncode != 0 and "--baud: invalid int value: 'fast'" in p.stderr


def test_flash_dry_run_for_s3_and_c3_writes_at_zero(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    for name, chip_id in (("esp32s3", 9), ("esp32c3", 5)):
        fw = esp_image(tmp_path / boards.load(name).firmware, chip_id)  # type: ignore[operator]
        assert flash.main(["--board", name, "--firmware", str(fw), "--dry-run"]) == 0
        assert "--chip %s --baud 460800 write-flash 0x0 %s" % (name, fw) in capsys.readouterr().out


def test_esptool_parser_rejects_what_esptool_would(tmp_path: Path) -> None:
    fw = esp_image(tmp_path / "fw.bin", 0)
    with pytest.raises(flash.FlashError, match="'fast' is not a valid baud rate"):
        flash.check_with_esptool(["esptool", "--chip", "esp32", "--baud", "fast", "erase-flash"])
    with pytest.raises(flash.FlashError, match="must be a number"):
        flash.check_with_esptool(["esptool", "--chip", "esp32", "write-flash", "0xzz", str(fw)])
    with pytest.raises(flash.FlashError, match="No such file"):
        flash.check_with_esptool(["esptool", "--chip", "esp32", "write-flash", "0x0", "/no/fw"])
    with pytest.raises(flash.FlashError, match="esp99"):
        flash.check_with_esptool(["esptool", "--chip", "esp99", "erase-flash"])


@pytest.mark.parametrize("args,message", [
    (["--board", "esp8266", "--firmware", "x.bin"], "unknown board 'esp8266'; known boards"),
    (["--board", "esp32", "--firmware", "/no/such.bin"], "firmware file /no/such.bin does not"),
    (["--board", "esp32"], "FIRMWARE=<file> is required, e.g. FIRMWARE=ESP32_GENERIC-v1.29.0"),
    (["--board", "unix", "--firmware", "x"], "board unix has nothing to flash"),
])
def test_flash_refuses(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert flash.main(args + ["--dry-run"]) == 2
    assert message in capsys.readouterr().err


def test_flash_refuses_another_chips_image(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    fw = esp_image(tmp_path / "ESP32_GENERIC_S3-v1.29.0.bin", chip_id=9)
    assert flash.main(["--board", "esp32", "--firmware", str(fw), "--dry-run"]) == 2
    assert "built for another chip (image chip id 9, board esp32 needs 0)" in \
        capsys.readouterr().err
    pico2 = uf2_image(tmp_path / "RPI_PICO2_W-v1.29.0.uf2", 0xE48BFF59)
    assert flash.main(["--board", "rp2-pico-w", "--firmware", str(pico2)]) == 2


def test_flash_pico_prints_bootsel_steps_or_copies(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    fw = uf2_image(tmp_path / "RPI_PICO_W-v1.29.0.uf2", 0xE48BFF56)
    assert flash.main(["--board", "rp2-pico-w", "--firmware", str(fw)]) == 0
    assert "hold BOOTSEL" in capsys.readouterr().out
    drive = tmp_path / "RPI-RP2"
    drive.mkdir()
    assert flash.main(["--board", "rp2-pico-w", "--firmware", str(fw), "--mount", str(drive)]) == 2
    (drive / "INFO_UF2.TXT").write_text("UF2 Bootloader v3.0\n")
    assert flash.main(["--board", "rp2-pico-w", "--firmware", str(fw), "--mount", str(drive)]) == 0
    assert (drive / fw.name).read_bytes() == fw.read_bytes()


# ---------------------------------------------------------------- provision (no board)


def good(**over: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {"api_url": "http://127.0.0.1:8080", "initial_token": TOKEN,
                           "initial_expiration": "2027-01-15T08:00:00.316Z",
                           "wifi": {"ssid": "lab", "password": "correct horse"}}
    raw.update(over)
    return raw


def test_provision_builds_a_config_the_firmware_accepts(tmp_path: Path) -> None:
    fw_config: Any = importlib.import_module("regtoken.config")  # the device's own validator

    ca = tmp_path / "ca.der"
    ca.write_bytes(b"\x30\x82\x01\x00" + bytes(256))
    raw = good(api_url="https://api.example.com/", ca_file=str(ca), provisioning_token="p" * 40,
               timeout_s="20", backoff_min_s=2, backoff_max_s="600", sleep="light")
    cfg, ca_path = provision.validate(raw, boards.load("esp32"))
    assert ca_path == ca and cfg["ca_file"] == "ca.der" and cfg["api_url"] == raw["api_url"][:-1]
    assert cfg["led"] == {"pin": 2, "active_high": True, "timer": 0}
    assert (cfg["timeout_s"], cfg["backoff_max_s"]) == (20, 600)
    fw_config.validate(json.loads(json.dumps(cfg)))  # raises ConfigError if it disagrees


@pytest.mark.parametrize("over,message", [
    ({"api_url": "ftp://host"}, "api_url: 'ftp://host' is not an http:// or https:// URL"),
    ({"api_url": "http://host:99999"}, "api_url: 'http://host:99999' has a bad host or port"),
    ({"api_url": None}, "api_url: missing"),
    ({"api_url": "https://host"}, "ca_file: must be set for https or tls_verify false; "
                                  "CA_FILE=<the server's CA"),
    ({"initial_token": "abc def"}, "initial_token: character 4 is not printable ASCII"),
    ({"initial_token": "x" * 1025}, "initial_token: 1025 characters, at most 1024"),
    ({"provisioning_token": "tab\there"}, "provisioning_token: character 4 is not printable"),
    ({"initial_expiration": "2027-01-15 08:00"}, "initial_expiration: '2027-01-15 08:00' is not"),
    ({"initial_expiration": "2027-02-30T08:00:00Z"}, "'2027-02-30T08:00:00Z' is not an RFC 3339"),
    ({"initial_expiration": "2027-02-28T23:59:60Z"}, "is not a real date-time"),
    ({"timeout_s": "0"}, "timeout_s: must be a number from 1 to 300"),
    ({"backoff_min_s": -5}, "backoff_min_s: must be a number from 1 to"),
    ({"backoff_max_s": "soon"}, "backoff_max_s: 'soon' is not a number"),
    ({"backoff_min_s": 60, "backoff_max_s": 30}, "not smaller than backoff_min_s"),
    ({"tls_verify": "maybe"}, "tls_verify: 'maybe' is not true or false"),
    ({"wifi": None}, "wifi: board esp32 needs Wi-Fi"),
    ({"wifi": {"ssid": "lab", "password": "short"}}, "wifi: password must be empty"),
    ({"wifi": {"ssid": "x" * 33}}, "wifi: ssid must be 1 to 32 bytes"),
    ({"ca_file": "/no/ca.der"}, "ca_file: /no/ca.der does not exist"),
    ({"sleep": "hibernate"}, 'sleep: must be "none" or "light" or "deep"'),
])
def test_provision_names_the_bad_value(over: dict[str, Any], message: str) -> None:
    with pytest.raises(provision.ProvisionError) as err:
        provision.validate(good(**over), boards.load("esp32"))
    assert message in str(err.value)
    assert TOKEN[6:30] not in str(err.value)  # never the secret itself


def test_provision_https_without_verification_is_explicit() -> None:
    cfg, _ = provision.validate(good(api_url="https://h", tls_verify="false"), boards.load("unix"))
    assert cfg["tls_verify"] is False
    assert any("tls_verify is false" in line for line in provision.describe(cfg, None))


def test_provision_sources_merge_in_order(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n"
                                     "-----END CERTIFICATE-----\n")
    (tmp_path / "provision.json").write_text(json.dumps({
        "api_url": "https://from-file", "ca_file": "ca.pem", "timeout_s": 30,
        "wifi": {"ssid": "file-ssid", "password": "file-password"}}))
    (tmp_path / "token.json").write_text(json.dumps(
        {"registrationToken": TOKEN, "expirationTime": None}))
    raw = provision.gather(str(tmp_path / "provision.json"), str(tmp_path / "token.json"),
                           {"API_URL": "https://from-env", "WIFI_PASSWORD": "env-password"})
    assert raw["api_url"] == "https://from-env"
    assert raw["ca_file"] == str(tmp_path / "ca.pem")  # relative to provision.json
    assert raw["wifi"] == {"ssid": "file-ssid", "password": "env-password"}
    assert (raw["initial_token"], raw["initial_expiration"]) == (TOKEN, None)


def test_provision_a_token_file_without_expiration_leaves_it_unknown(tmp_path: Path) -> None:
    # no expirationTime in the file is an unknown expiry (the first boot rotates at once),
    # not null (never expires: the device would never rotate at all)
    (tmp_path / "token.json").write_text(json.dumps({"registrationToken": TOKEN}))
    raw = provision.gather(None, str(tmp_path / "token.json"), {"API_URL": "http://h"})
    assert raw["initial_token"] == TOKEN and "initial_expiration" not in raw
    cfg, _ = provision.validate(raw, boards.load("unix"))
    assert "initial_expiration" not in cfg


def test_provision_rejects_unknown_keys_and_bad_token_files(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text(json.dumps({"api_uri": "http://x"}))
    with pytest.raises(provision.ProvisionError, match="unknown key.*api_uri"):
        provision.gather(str(tmp_path / "p.json"), None, {})
    (tmp_path / "t.json").write_text(json.dumps({"token": TOKEN}))
    with pytest.raises(provision.ProvisionError, match="must be a token object"):
        provision.gather(None, str(tmp_path / "t.json"), {})


def test_make_provision_dry_run_never_echoes_secrets(tmp_path: Path) -> None:
    token_file = tmp_path / "token.json"
    token_file.write_text(json.dumps({"registrationToken": TOKEN,
                                      "expirationTime": "2027-01-15T08:00:00Z"}))
    env = {"API_URL": "http://127.0.0.1:8080", "PROVISIONING_TOKEN": "Prov-" + "s" * 30,
           "WIFI_SSID": "lab", "WIFI_PASSWORD": "hunter2hunter2"}
    p = make("provision", "BOARD=esp32", "TOKEN_FILE=%s" % token_file, "DRY_RUN=1", env=env)
    assert p.returncode == 0, p.stderr
    out = p.stdout + p.stderr
    assert "AbCdEf...(248 chars)" in out and "Prov-s...(35 chars)" in out
    assert "hunter2" not in out and TOKEN[:7] not in out and "Prov-ss" not in out
    assert "no board touched" in out


# ---------------------------------------------------------------- deploy plan and build


def test_deploy_plan() -> None:
    built = {"main.py": "m", "regtoken/store.mpy": "s2", "regtoken/edges.mpy": "e"}
    remote = {"main.py": "m", "regtoken/": "", "regtoken/store.mpy": "s1",
              "regtoken/store.py": "old", "regtoken/gone.mpy": "g", "regtoken/notes.txt": "n",
              "config.json": "c", "token.a": "t"}
    plan = deploy.plan(built, remote)
    assert plan.mkdir == []
    assert plan.copy == ["regtoken/edges.mpy", "regtoken/store.mpy"]
    assert plan.unchanged == ["main.py"]
    # the .py twin would shadow the new .mpy; gone.mpy left firmware/; the rest is not ours
    assert plan.remove == ["regtoken/gone.mpy", "regtoken/store.py"]


def test_deploy_plan_on_an_empty_board() -> None:
    plan = deploy.plan({"main.py": "m", "regtoken/sub/x.mpy": "x"}, {})
    assert plan.mkdir == ["regtoken", "regtoken/sub"]
    assert plan.copy == ["main.py", "regtoken/sub/x.mpy"] and plan.remove == []


def test_deploy_build_compiles_all_but_main(tmp_path: Path) -> None:
    built = deploy.build(boards.load("esp32c3"), tmp_path)
    modules = sorted(p.relative_to(ROOT / "firmware").as_posix()
                     for p in (ROOT / "firmware").glob("*/*.py"))
    assert sorted(built) == sorted(["main.py"] + [m[:-3] + ".mpy" for m in modules])
    assert (tmp_path / "main.py").read_bytes() == (ROOT / "firmware" / "main.py").read_bytes()
    assert (tmp_path / "regtoken" / "store.mpy").read_bytes()[:2] == b"M\x06"  # mpy v6


def test_deploy_build_lib_only_leaves_main_out(tmp_path: Path) -> None:
    built = deploy.build(boards.load("esp32"), tmp_path, lib_only=True)
    modules = sorted(p.name for p in (ROOT / "firmware" / "regtoken").glob("*.py"))
    assert sorted(built) == ["regtoken/%s.mpy" % m[:-3] for m in modules]
    assert not (tmp_path / "main.py").exists()
    # a user's main.py on the board is not ours to touch or remove
    plan = deploy.plan(built, {"main.py": "theirs", "boot.py": "b", "regtoken/": ""})
    assert "main.py" not in plan.copy + plan.remove and plan.remove == []


# ---------------------------------------------------------------- mip and freezing


def firmware_modules() -> list[str]:
    pkg = ROOT / "firmware" / "regtoken"
    return sorted(p.relative_to(pkg.parent).as_posix() for p in pkg.rglob("*.py"))


def test_package_json_lists_every_module() -> None:
    doc = json.loads((ROOT / "package.json").read_text())
    assert doc["version"] == re.search(r'^version = "(.+)"', (ROOT / "pyproject.toml")
                                       .read_text(), re.M).group(1)  # type: ignore[union-attr]
    listed = {dest: src for dest, src in doc["urls"]}
    missing = [m for m in firmware_modules() if listed.get(m) != "firmware/" + m]
    assert not missing, "add to package.json urls: %s" % ", ".join(
        '["%s", "firmware/%s"]' % (m, m) for m in missing)
    assert all((ROOT / src).is_file() for src in listed.values())


def test_manifest_freezes_every_module() -> None:
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def record(name: str) -> Any:
        return lambda *a, **kw: calls.append((name, a, kw))

    names = ("metadata", "include", "package", "module", "require")
    exec((ROOT / "manifest.py").read_text(), {n: record(n) for n in names})
    covered: set[str] = set()
    for name, args, kw in calls:
        base = ROOT / kw.get("base_path", ".")
        if name == "package":
            covered |= {p.relative_to(base).as_posix() for p in (base / args[0]).rglob("*.py")}
        elif name == "module":
            covered.add(args[0])
    assert set(firmware_modules()) <= covered
