/* A CPU of the slow kind (AVX2 only: no AVX-512, VNNI, AMX or native bf16), reproduced on a
 * faster x86-64 CPU for every library in the process: LD_PRELOAD this library and each CPUID
 * instruction executed after it loads traps (Linux's CPUID faulting, arch_prctl
 * ARCH_SET_CPUID) and is answered with those feature bits cleared. torch (ATen, oneDNN, MKL,
 * fbgemm) and ONNX Runtime (MLAS) then pick their AVX2 kernels, as on such a CPU. The dynamic
 * loader's own CPUID probe runs before this library and is not masked (it only picks glibc's
 * string routines). Built and used by bench/cpu_kind.py; the bench checks the result.
 *
 *     gcc -O2 -shared -fPIC -o cpuid_mask.so cpuid_mask.c
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <cpuid.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define BIT(n) (1u << (n))

/* CPUID leaf 7 sub-leaf 0 (Intel SDM vol. 2A, table 3-8). */
static const unsigned L7_EBX = BIT(16) | BIT(17) | BIT(21) | BIT(26) | BIT(27) | BIT(28) |
                               BIT(30) | BIT(31); /* AVX512 F DQ IFMA PF ER CD BW VL */
static const unsigned L7_ECX = BIT(1) | BIT(6) | BIT(11) | BIT(12) | BIT(14);
/* AVX512 VBMI VBMI2 VNNI BITALG VPOPCNTDQ */
static const unsigned L7_EDX = BIT(2) | BIT(3) | BIT(8) | BIT(22) | BIT(23) | BIT(24) | BIT(25);
/* AVX512 4VNNIW 4FMAPS VP2INTERSECT, AMX-BF16, AVX512-FP16, AMX-TILE, AMX-INT8 */
static const unsigned L7S1_EAX = BIT(4) | BIT(5) | BIT(21) | BIT(23);
/* AVX-VNNI, AVX512-BF16, AMX-FP16, AVX-IFMA */

int cpuid_mask_active = 0; /* 1 once faulting is on (read by the bench through ctypes) */

static void on_sigsegv(int sig, siginfo_t *info, void *context) {
    ucontext_t *uc = (ucontext_t *)context;
    greg_t *r = uc->uc_mcontext.gregs;
    const unsigned char *ip = (const unsigned char *)r[REG_RIP];
    (void)info;
    if (ip[0] != 0x0f || ip[1] != 0xa2) { /* a real fault: die of it as usual */
        signal(sig, SIG_DFL);
        return;
    }
    unsigned leaf = (unsigned)r[REG_RAX], sub = (unsigned)r[REG_RCX], a, b, c, d;
    syscall(SYS_arch_prctl, ARCH_SET_CPUID, 1);
    __cpuid_count(leaf, sub, a, b, c, d);
    syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);
    if (leaf == 7 && sub == 0) {
        b &= ~L7_EBX;
        c &= ~L7_ECX;
        d &= ~L7_EDX;
    } else if (leaf == 7 && sub == 1) {
        a &= ~L7S1_EAX;
    }
    r[REG_RAX] = a;
    r[REG_RBX] = b;
    r[REG_RCX] = c;
    r[REG_RDX] = d;
    r[REG_RIP] += 2; /* past the 2-byte CPUID instruction */
}

__attribute__((constructor)) static void cpuid_mask_init(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigsegv;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, NULL) == 0 && syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) == 0)
        cpuid_mask_active = 1;
}
