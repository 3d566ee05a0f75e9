/* Which memcpy glibc chose, for a program in a container: the AVX variants end with
   vzeroupper, which clears every ymm register's upper half; the SSE ones leave them.
   On kvm_pvm the guest kernel does not preserve ymm upper halves across task switches,
   so Kasa keeps glibc off AVX there (GLIBC_TUNABLES, docs/kvm-pvm.md). Built static
   by ContainerdTests. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    static char source[8192], target[8192];
    unsigned long long pattern[4] = {1, 2, 0x1111111111111111ULL, 0x2222222222222222ULL}, seen[4];
    void *(*volatile copy)(void *, const void *, size_t) = memcpy;
    __asm__ volatile("vmovdqu %0, %%ymm15" :: "m"(pattern) : "xmm15");
    copy(target, source, (size_t)atoi("8192"));
    __asm__ volatile("vmovdqu %%ymm15, %0" : "=m"(seen));
    puts(seen[2] == pattern[2] ? "memcpy: sse" : "memcpy: avx");
    return 0;
}
