/* Tries to attach with ptrace to the process given as argument, or to its
 * parent (kiln's helper, where no pid namespace hides it), and to read its
 * memory through /proc, and makes an x32 system call; prints what
 * happened, one line each. Built static by tests/run.rs and run inside
 * RUN: all must fail. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv) {
    pid_t pid = argc > 1 ? (pid_t)atoi(argv[1]) : getppid();
    if (pid <= 0) pid = 1;
    long attached = ptrace(PTRACE_ATTACH, pid, 0, 0);
    printf("ptrace %s\n", attached == 0 ? "ATTACHED" : strerror(errno));
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/mem", (int)pid);
    int fd = open(path, O_RDONLY);
    printf("mem %s\n", fd >= 0 ? "OPENED" : strerror(errno));
    /* getpid through the x32 ABI's numbers, which name-based filters miss. */
    long x32 = syscall(0x40000000L | 39L);
    printf("x32 %s\n", x32 >= 0 ? "PASSED" : strerror(errno));
    return 0;
}
