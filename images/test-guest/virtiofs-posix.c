/* A POSIX workload on a virtio-fs mount, run by the test rootfs's init (kasatest=virtiofs).
 * Each step prints "KASA-FS-OK <step>" or "KASA-FS-FAIL <step>: <why>"; the test on the host
 * checks the lines and then the files the steps left in the shared directory.
 * Usage: virtiofs-posix MOUNTPOINT (the host made MOUNTPOINT/many with 10,000 files and
 * MOUNTPOINT/pattern, 1 MiB of pattern bytes). */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int failures;

static void report(const char *step, int ok, const char *why) {
    if (ok) {
        printf("KASA-FS-OK %s\n", step);
    } else {
        printf("KASA-FS-FAIL %s: %s (errno %s)\n", step, why, strerror(errno));
        failures++;
    }
    fflush(stdout);
}

static int write_file(const char *path, const char *text, int flags) {
    int fd = open(path, O_WRONLY | O_CREAT | flags, 0644);
    if (fd < 0) return -1;
    ssize_t n = write(fd, text, strlen(text));
    int closed = close(fd);
    return (n == (ssize_t)strlen(text) && closed == 0) ? 0 : -1;
}

static ssize_t read_file(const char *path, char *buffer, size_t size) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    ssize_t total = 0, n;
    while ((n = read(fd, buffer + total, size - total)) > 0) total += n;
    close(fd);
    return n < 0 ? -1 : total;
}

static int remove_tree(const char *path) {
    struct stat status;
    if (lstat(path, &status) != 0) return -1;
    if (!S_ISDIR(status.st_mode)) return unlink(path);
    DIR *directory = opendir(path);
    if (!directory) return -1;
    struct dirent *entry;
    char child[4096];
    while ((entry = readdir(directory))) {
        if (!strcmp(entry->d_name, ".") || !strcmp(entry->d_name, "..")) continue;
        snprintf(child, sizeof child, "%s/%s", path, entry->d_name);
        if (remove_tree(child) != 0) { closedir(directory); return -1; }
    }
    closedir(directory);
    return rmdir(path);
}

static unsigned char pattern_byte(size_t i) { return (unsigned char)(i * 31 + (i >> 9)); }

int main(int argc, char **argv) {
    if (argc != 2 || chdir(argv[1]) != 0) { printf("KASA-FS-FAIL setup: cannot enter the mount\n"); return 2; }
    char buffer[256];
    struct stat status, other;

    report("mkdir", mkdir("work", 0755) == 0, "mkdir work");

    int ok = write_file("work/a.txt", "hello virtio-fs\n", O_TRUNC) == 0
        && read_file("work/a.txt", buffer, sizeof buffer) == 16 && memcmp(buffer, "hello virtio-fs\n", 16) == 0;
    report("create-write-read", ok, "content differs");

    ok = write_file("work/a.txt", "more\n", O_APPEND) == 0
        && read_file("work/a.txt", buffer, sizeof buffer) == 21 && memcmp(buffer, "hello virtio-fs\nmore\n", 21) == 0;
    report("append", ok, "appended content differs");

    ok = truncate("work/a.txt", 5) == 0 && stat("work/a.txt", &status) == 0 && status.st_size == 5;
    if (ok) {
        int fd = open("work/a.txt", O_RDWR);
        ok = fd >= 0 && ftruncate(fd, 100) == 0 && fstat(fd, &status) == 0 && status.st_size == 100
            && pread(fd, buffer, 10, 90) == 10 && buffer[0] == 0 && buffer[9] == 0;
        if (fd >= 0) close(fd);
    }
    report("truncate", ok, "size after truncate");

    ok = mkdir("work/d1", 0755) == 0 && mkdir("work/d1/d2", 0755) == 0 && mkdir("work/d1/d2/d3", 0700) == 0
        && stat("work/d1/d2/d3", &status) == 0 && S_ISDIR(status.st_mode) && (status.st_mode & 0777) == 0700;
    report("mkdir-p", ok, "nested directories");

    ok = rename("work/a.txt", "work/d1/d2/b.txt") == 0 && access("work/a.txt", F_OK) != 0 && errno == ENOENT
        && stat("work/d1/d2/b.txt", &status) == 0 && status.st_size == 100;
    report("rename-across-directories", ok, "rename");

    ok = link("work/d1/d2/b.txt", "work/hard") == 0 && stat("work/hard", &status) == 0
        && stat("work/d1/d2/b.txt", &other) == 0 && status.st_nlink == 2 && status.st_ino == other.st_ino;
    report("hard-link", ok, "link count or inode");

    ssize_t length = -1;
    ok = symlink("d1/d2/b.txt", "work/sym") == 0 && (length = readlink("work/sym", buffer, sizeof buffer)) == 11
        && memcmp(buffer, "d1/d2/b.txt", 11) == 0 && stat("work/sym", &status) == 0 && status.st_size == 100
        && lstat("work/sym", &other) == 0 && S_ISLNK(other.st_mode);
    report("symlink", ok, "symlink target or stat through it");

    ok = chmod("work/hard", 0640) == 0 && chown("work/hard", 1234, 5678) == 0 && stat("work/d1/d2/b.txt", &status) == 0
        && (status.st_mode & 07777) == 0640 && status.st_uid == 1234 && status.st_gid == 5678;
    report("chmod-chown", ok, "mode or owner");

    DIR *many = opendir("many");
    long count = 0, sum = 0;
    if (many) {
        struct dirent *entry;
        while ((entry = readdir(many))) {
            int index;
            if (sscanf(entry->d_name, "f%05d", &index) == 1) { count++; sum += index; }
        }
        closedir(many);
    }
    report("readdir-10000", many && count == 10000 && sum == 10000L * 9999 / 2, "entries missing");
    if (count != 10000) printf("KASA-FS-READDIR-COUNT %ld\n", count);

    int fd = open("work/sparse", O_RDWR | O_CREAT, 0644);
    ok = fd >= 0 && pwrite(fd, "end", 3, 1L << 30) == 3 && fstat(fd, &status) == 0 && status.st_size == (1L << 30) + 3
        && status.st_blocks * 512 < (1 << 20) && pread(fd, buffer, 4, 4096) == 4 && buffer[0] == 0;
    report("sparse", ok, "a 1 GiB sparse file");
    if (fd >= 0) close(fd);

    fd = open("work/d1/d2/b.txt", O_RDWR);
    ok = fd >= 0 && pwrite(fd, "synced", 6, 0) == 6 && fsync(fd) == 0 && fdatasync(fd) == 0;
    report("fsync", ok, "fsync");
    if (fd >= 0) close(fd);

    fd = open("pattern", O_RDONLY);
    ok = fd >= 0 && fstat(fd, &status) == 0 && status.st_size == (1 << 20);
    if (ok) {
        unsigned char *mapped = mmap(NULL, 1 << 20, PROT_READ, MAP_SHARED, fd, 0);
        ok = mapped != MAP_FAILED;
        for (size_t i = 0; ok && i < (1 << 20); i++) ok = mapped[i] == pattern_byte(i);
        if (mapped != MAP_FAILED) munmap(mapped, 1 << 20);
    }
    report("mmap-read", ok, "mapped bytes differ");
    if (fd >= 0) close(fd);

    ok = mkdir("work/tree", 0755) == 0 && mkdir("work/tree/x", 0755) == 0 && mkdir("work/tree/y", 0755) == 0
        && write_file("work/tree/x/one", "1", 0) == 0 && write_file("work/tree/y/two", "2", 0) == 0
        && symlink("../x/one", "work/tree/y/link") == 0 && remove_tree("work/tree") == 0
        && access("work/tree", F_OK) != 0 && errno == ENOENT;
    report("rm-r", ok, "recursive removal");

    report("host-visible-write", write_file("work/from-guest", "written in the guest\n", O_TRUNC) == 0, "write");

    ok = unlink("work/hard") == 0 && stat("work/d1/d2/b.txt", &status) == 0 && status.st_nlink == 1;
    report("unlink", ok, "link count after unlink");

    sync();
    printf("KASA-FS-DONE failures=%d\n", failures);
    fflush(stdout);
    return failures == 0 ? 0 : 1;
}
