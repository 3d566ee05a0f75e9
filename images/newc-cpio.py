#!/usr/bin/env python3
# Writes an uncompressed "newc" cpio archive, the format the Linux kernel unpacks as an
# initramfs (Documentation/driver-api/early-userspace/buffer-format.rst), from a manifest
# on standard input. No root, mknod or fakeroot is needed for device nodes, and the
# output is byte-for-byte reproducible (owner 0:0, mtime 0, inodes numbered in order).
#
#   python3 images/newc-cpio.py OUT.cpio < manifest
#
# Manifest: one entry per line, in archive order (parents before children); blank lines
# and lines starting with '#' are skipped. Names are relative to the archive root.
#   dir  NAME                      directory, mode 0755
#   file NAME PERM SOURCE          regular file with SOURCE's contents, PERM in octal
#   link NAME TARGET               symbolic link
#   char NAME MAJOR MINOR PERM     character device node
# The archive ends with the TRAILER!!! entry and is padded to a multiple of 512 bytes,
# like cpio(1) does.
import sys

S_IFDIR, S_IFREG, S_IFLNK, S_IFCHR = 0o040000, 0o100000, 0o120000, 0o020000


def entries_from(manifest):
    """(name, mode, data, (rdev major, minor)) for each manifest line."""
    for number, line in enumerate(manifest, 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        kind = words[0]
        try:
            if kind == "dir" and len(words) == 2:
                yield words[1], S_IFDIR | 0o755, b"", (0, 0)
            elif kind == "file" and len(words) == 4:
                with open(words[3], "rb") as source:
                    yield words[1], S_IFREG | int(words[2], 8), source.read(), (0, 0)
            elif kind == "link" and len(words) == 3:
                yield words[1], S_IFLNK | 0o777, words[2].encode(), (0, 0)
            elif kind == "char" and len(words) == 5:
                yield words[1], S_IFCHR | int(words[4], 8), b"", (int(words[2]), int(words[3]))
            else:
                raise ValueError("expected dir/file/link/char with the right number of fields")
        except (ValueError, OSError) as error:
            sys.exit("newc-cpio: manifest line %d (%r): %s" % (number, line.rstrip("\n"), error))


def pad4(n):
    return (4 - n % 4) % 4


def write(out_path, entries):
    with open(out_path, "wb") as o:
        ino = 1
        for name, mode, data, (rmaj, rmin) in list(entries) + [("TRAILER!!!", 0, b"", (0, 0))]:
            nameb = name.encode() + b"\0"
            nlink = 2 if (mode & 0o170000) == S_IFDIR else 1
            fields = (ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rmaj, rmin, len(nameb), 0)
            hdr = b"070701" + b"".join(b"%08x" % v for v in fields)
            o.write(hdr + nameb + b"\0" * pad4(len(hdr) + len(nameb)))
            o.write(data + b"\0" * pad4(len(data)))
            ino += 1
        size = o.tell()
        o.write(b"\0" * ((512 - size % 512) % 512))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: newc-cpio.py OUT.cpio < manifest")
    write(sys.argv[1], entries_from(sys.stdin))
