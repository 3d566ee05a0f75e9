/*
 * Guest side of the VMM's vsock test, run by the test rootfs's /sbin/init.
 * 1. Connects to the host (CID 2) on port 5000 and sends "hello from the guest\n";
 *    the host end is the Unix socket <uds>_5000.
 * 2. Listens on port 1024 (the Kata agent's port), accepts one connection from the
 *    host, and echoes every byte back until the host closes it.
 * Prints what it does on stdout (the serial console) for the test to follow.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <linux/vm_sockets.h>

static int fail(const char *what) {
    printf("KASA-VSOCK-FAIL %s: %m\n", what);
    fflush(stdout);
    return 1;
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);

    int out = socket(AF_VSOCK, SOCK_STREAM, 0);
    if (out < 0) return fail("socket");
    struct sockaddr_vm host = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_HOST, .svm_port = 5000 };
    if (connect(out, (struct sockaddr *)&host, sizeof host) < 0) return fail("connect to host port 5000");
    const char *hello = "hello from the guest\n";
    if (write(out, hello, strlen(hello)) != (ssize_t)strlen(hello)) return fail("write to host");
    close(out);
    printf("KASA-VSOCK-SENT\n");

    int listener = socket(AF_VSOCK, SOCK_STREAM, 0);
    if (listener < 0) return fail("socket");
    struct sockaddr_vm any = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = 1024 };
    if (bind(listener, (struct sockaddr *)&any, sizeof any) < 0) return fail("bind port 1024");
    if (listen(listener, 1) < 0) return fail("listen");
    printf("KASA-VSOCK-LISTENING 1024\n");
    int connection = accept(listener, NULL, NULL);
    if (connection < 0) return fail("accept");
    printf("KASA-VSOCK-ACCEPTED\n");
    char buffer[65536];
    long total = 0;
    for (;;) {
        ssize_t count = read(connection, buffer, sizeof buffer);
        if (count < 0) return fail("read");
        if (count == 0) break;
        for (ssize_t done = 0; done < count;) {
            ssize_t written = write(connection, buffer + done, count - done);
            if (written < 0) return fail("write");
            done += written;
        }
        total += count;
    }
    printf("KASA-VSOCK-ECHOED %ld\n", total);
    close(connection);
    return 0;
}
