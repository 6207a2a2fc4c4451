/*
 * avx512 LOG [CORRUPT_AT]
 *
 * Holds live values in all 32 zmm registers and in the opmask registers
 * k1-k7 across a checkpoint. avx_loop() (assembly below) loads the expected
 * patterns once, then forever: compares every register with its pattern in
 * memory, increments a counter, formats "tick <n>" with general-purpose
 * registers only, write(2)s it and nanosleeps 10 ms, both as raw syscalls
 * (the kernel preserves vector state across syscalls). No C code and no libc
 * runs while the patterns are live, so nothing but a bad restore can change
 * them. On a mismatch it returns and the C side logs "FAIL reg zmm<n>" or
 * "FAIL reg k<n>".
 *
 * CORRUPT_AT (self-test of the checker): after that many ticks the loop
 * doubles every lane of zmm31, which must be reported as "FAIL reg zmm31".
 *
 * Log: "start pid <pid>", then "tick <n>" lines.
 */
#include "common.h"

#include <stddef.h>
#include <stdint.h>

struct avx_state {
	uint8_t zmm[32][64];
	uint64_t k[8];
	uint64_t count;
	uint64_t fd;
	struct timespec ts;
	uint64_t corrupt_at;
	char buf[64];
} __attribute__((aligned(64)));

/* The assembly below hard-codes these offsets. */
_Static_assert(offsetof(struct avx_state, k) == 2048, "k");
_Static_assert(offsetof(struct avx_state, count) == 2112, "count");
_Static_assert(offsetof(struct avx_state, fd) == 2120, "fd");
_Static_assert(offsetof(struct avx_state, ts) == 2128, "ts");
_Static_assert(offsetof(struct avx_state, corrupt_at) == 2144, "corrupt_at");
_Static_assert(offsetof(struct avx_state, buf) == 2152, "buf");

/*
 * long avx_loop(struct avx_state *st): returns the failing register (0-31:
 * zmm<n>, 32+n: k<n>) or -1 if write(2) failed.
 */
__asm__(
	".text\n"
	".globl avx_loop\n"
	".type avx_loop,@function\n"
	"avx_loop:\n"
	"	push %rbx\n"
	"	push %r12\n"
	"	mov %rdi, %rbx\n"
	"	.irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31\n"
	"	vmovdqu64 64*\\i(%rbx), %zmm\\i\n"
	"	.endr\n"
	"	.irp k,1,2,3,4,5,6,7\n"
	"	kmovq 2048+8*\\k(%rbx), %k\\k\n"
	"	.endr\n"
	".Lcheck:\n"
	"	.irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31\n"
	"	mov $\\i, %r12d\n"
	"	vpcmpeqq 64*\\i(%rbx), %zmm\\i, %k0\n"
	"	kmovw %k0, %eax\n"
	"	cmp $0xff, %eax\n"
	"	jne .Lfail\n"
	"	.endr\n"
	"	.irp k,1,2,3,4,5,6,7\n"
	"	mov $(32+\\k), %r12d\n"
	"	kmovq %k\\k, %rax\n"
	"	cmp 2048+8*\\k(%rbx), %rax\n"
	"	jne .Lfail\n"
	"	.endr\n"
	"	incq 2112(%rbx)\n"
	"	mov 2112(%rbx), %rax\n"
	"	cmp 2144(%rbx), %rax\n"
	"	jne .Lformat\n"
	"	vpaddq %zmm31, %zmm31, %zmm31\n"
	".Lformat:\n"
	"	lea 2152+63(%rbx), %rdi\n"
	"	movb $10, (%rdi)\n"
	"	mov $10, %rcx\n"
	".Ldigit:\n"
	"	xor %edx, %edx\n"
	"	div %rcx\n"
	"	add $48, %dl\n"
	"	dec %rdi\n"
	"	mov %dl, (%rdi)\n"
	"	test %rax, %rax\n"
	"	jnz .Ldigit\n"
	"	.irp c,32,107,99,105,116\n" /* "tick " backwards */
	"	dec %rdi\n"
	"	movb $\\c, (%rdi)\n"
	"	.endr\n"
	"	lea 2152+64(%rbx), %rdx\n"
	"	sub %rdi, %rdx\n"
	"	mov %rdi, %rsi\n"
	"	mov 2120(%rbx), %rdi\n"
	"	mov $1, %eax\n" /* write */
	"	syscall\n"
	"	test %rax, %rax\n"
	"	js .Lwerr\n"
	"	lea 2128(%rbx), %rdi\n"
	"	xor %esi, %esi\n"
	"	mov $35, %eax\n" /* nanosleep; EINTR only shortens the sleep */
	"	syscall\n"
	"	jmp .Lcheck\n"
	".Lwerr:\n"
	"	mov $-1, %r12\n"
	".Lfail:\n"
	"	mov %r12, %rax\n"
	"	vzeroupper\n"
	"	pop %r12\n"
	"	pop %rbx\n"
	"	ret\n"
	".size avx_loop, .-avx_loop\n");

long avx_loop(struct avx_state *st);

static struct avx_state st;

int main(int argc, char **argv)
{
	if (argc != 2 && argc != 3)
		return 1;
	workload_start(argv[1]);
	__builtin_cpu_init();
	if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw")) {
		log_line("FAIL cpu lacks avx512f/avx512bw");
		return 1;
	}
	st.corrupt_at = argc == 3 ? parse_u64(argv[2], "CORRUPT_AT") : 0;

	/* Distinct, non-zero values in every lane of every register. */
	uint64_t s = 0x243f6a8885a308d3ULL;
	for (int i = 0; i < 32; i++) {
		for (int j = 0; j < 64; j += 8) {
			s ^= s << 13;
			s ^= s >> 7;
			s ^= s << 17;
			memcpy(&st.zmm[i][j], &s, 8);
		}
	}
	for (int k = 1; k < 8; k++) {
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		st.k[k] = s;
	}
	st.fd = (uint64_t)log_fd;
	st.ts.tv_nsec = 10 * 1000 * 1000;

	log_line("start pid %d", getpid());
	long r = avx_loop(&st);
	if (r >= 0 && r < 32)
		log_line("FAIL reg zmm%ld", r);
	else if (r > 32 && r < 40)
		log_line("FAIL reg k%ld", r - 32);
	else
		log_line("FAIL write");
	return 1;
}
