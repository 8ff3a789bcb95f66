# Formatted flash partitions on a BlockDev, mounted with MicroPython's own drivers.
# MicroPython only: CPython has no os.VfsLfs2 / os.VfsFat.
import os

from powercut.blockdev import BlockDev, PowerCut

# name -> (driver, block size, block count, erase_first, mkfs and mount options). Small
# images keep a sweep's many replays cheap; littlefs still has room to allocate and compact.
# lfs2-*: MicroPython's default littlefs geometry (progsize 32, so a 128-byte cache).
# lfs2-4096-p128: formatted and mounted with progsize=128 (a 512-byte cache), which keeps
# a record of up to 512 bytes inline in its directory's metadata (docs/benchmarks.md).
# fat: FAT on 512-byte sectors that a write replaces, like an SD card.
# fat-32k: "fat" on 64 sectors, small enough for a Pico's heap with room for a torn copy.
# fat-flash: FAT on raw NOR flash, 4 KiB sectors erased before each write, as when a
# board's flash partition is formatted FAT (esp32.Partition, older ESP8266/ESP32 builds).
NAMES = ("lfs2-512", "lfs2-4096", "lfs2-4096-p128", "fat", "fat-flash")  # the default sweep
ALL = NAMES
KINDS = {
    "lfs2-512": ("VfsLfs2", 512, 128, False, {}),
    "lfs2-4096": ("VfsLfs2", 4096, 32, False, {}),
    "lfs2-4096-p128": ("VfsLfs2", 4096, 32, False, {"progsize": 128}),
    "fat": ("VfsFat", 512, 128, False, {}),
    "fat-32k": ("VfsFat", 512, 64, False, {}),
    "fat-flash": ("VfsFat", 4096, 32, True, {}),
}


def block_size(kind):
    return KINDS[kind][1]


def driver(kind):
    return getattr(os, KINDS[kind][0])


def blank(kind):
    """A freshly formatted device."""
    _, size, count, erase_first, opts = KINDS[kind]
    dev = BlockDev(size, count, erase_first=erase_first)
    driver(kind).mkfs(dev, **opts)
    return dev


def device(kind, image, cut_after=None, torn=None):
    """A device holding a copy of image, as a board would find it at power-up."""
    return BlockDev(block_size(kind), data=image, cut_after=cut_after, torn=torn,
                    erase_first=KINDS[kind][3])


def mount(dev, kind, where):
    # a fresh driver object every time: nothing cached survives a power cut
    os.mount(driver(kind)(dev, **KINDS[kind][4]), where)


def unmount(where):
    try:
        os.umount(where)
    except (OSError, PowerCut):
        pass


# -- what a block holds, for traces --


def label(kind, image, block):
    """What block `block` of a formatted image is: on FAT the region (and the file or
    directory that owns a data cluster), on littlefs just its number."""
    if KINDS[kind][0] != "VfsFat":
        return "block %d" % block
    rsvd, root, data, spc = fat_regions(image)
    if block < rsvd:
        return "boot sector"
    if block < root:
        return "FAT"
    if block < data:
        return "root directory"
    cluster = (block - data) // spc + 2
    return "cluster %d (%s)" % (cluster, fat_names(image).get(cluster, "free"))


def _u16(image, i):
    return image[i] | image[i + 1] << 8


def fat_regions(image):
    """(first FAT sector, first root-directory sector, first data sector, sectors per
    cluster) from the boot sector of a FAT12/16 image."""
    bps, spc, rsvd = _u16(image, 11), image[13], _u16(image, 14)
    root = rsvd + image[16] * _u16(image, 22)
    return rsvd, root, root + (_u16(image, 17) * 32 + bps - 1) // bps, spc


def fat_names(image):
    """{first cluster: path} of the root directory's entries and of their subdirectories'."""
    rsvd, root, data, spc = fat_regions(image)
    bps = _u16(image, 11)
    names = {}
    _walk(image, root * bps, (data - root) * bps, "", names)
    for cluster, name in list(names.items()):
        start = ((cluster - 2) * spc + data) * bps
        if name.endswith("/") and start + spc * bps <= len(image):
            _walk(image, start, spc * bps, name, names)
    return names


def _walk(image, start, length, prefix, names):
    for off in range(start, start + length, 32):
        first, attr = image[off], image[off + 11]
        if first == 0:
            return
        if first in (0xE5, 0x2E) or attr == 0x0F:  # deleted, "." or "..", long name
            continue
        try:
            base = bytes(image[off : off + 8]).decode().strip()
            ext = bytes(image[off + 8 : off + 11]).decode().strip()
        except UnicodeError:  # an erased or torn directory sector
            continue
        name = (base + ("." + ext if ext else "")).lower() + ("/" if attr & 0x10 else "")
        names[_u16(image, off + 26)] = prefix + name
