/* slirp_probe: what the libslirp this build links does with lone IP fragments, without micro86 in
 * the way. Each shape goes to slirp_input() of a fresh 10.0.2.0/24 stack in a child process; the
 * line says whether the child lived. Exit status 1 if an IPv6 shape or an IPv4 shape other than the
 * lone last fragment kills it (docs/network.md relies on those being safe); the lone last IPv4
 * fragment is issue 19's crash on Debian 12's 4.7.0 and is reported, not judged (micro86 guards it).
 * usage: slirp_probe */
#include <arpa/inet.h>
#include <libslirp.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static ssize_t out(const void *b, size_t n, void *o) { (void)b, (void)o; return (ssize_t)n; }
static void err(const char *m, void *o) { (void)m, (void)o; }
static int64_t now(void *o) { (void)o; return 0; }
static void *tnew(SlirpTimerCb cb, void *c, void *o) { (void)cb, (void)c; return o; }
static void tfree(void *t, void *o) { (void)t, (void)o; }
static void tmod(void *t, int64_t e, void *o) { (void)t, (void)e, (void)o; }
static void fd_cb(int fd, void *o) { (void)fd, (void)o; }
static void notify(void *o) { (void)o; }

/* One frame: IPv4 UDP 10.0.2.15 -> 10.0.2.2 with flags/offset `frag`, or IPv6 with a fragment
 * header (offset in 8-byte units, M flag), 64 bytes of data. Returns its length. */
static int frame(unsigned char *f, int v6, unsigned frag) {
    memset(f, 0, 128);
    f[12] = v6 ? 0x86 : 0x08, f[13] = v6 ? 0xdd : 0x00;
    unsigned char *ip = f + 14;
    if (v6) {
        ip[0] = 0x60, ip[5] = 8 + 64, ip[6] = 44, ip[7] = 64;  /* payload length, next header 44 */
        ip[8] = 0xfe, ip[9] = 0x80, ip[23] = 0x0f, ip[24] = 0xfe, ip[25] = 0xc0, ip[39] = 2;
        ip[40] = 17, ip[42] = frag >> 8, ip[43] = frag & 0xff, ip[47] = 1;
        return 14 + 40 + 8 + 64;
    }
    ip[0] = 0x45, ip[3] = 20 + 64, ip[6] = frag >> 8, ip[7] = frag & 0xff, ip[8] = 64, ip[9] = 17;
    ip[12] = 10, ip[14] = 2, ip[15] = 15, ip[16] = 10, ip[18] = 2, ip[19] = 2;
    unsigned sum = 0;
    for (int i = 0; i < 20; i += 2) sum += ip[i] << 8 | ip[i + 1];
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    ip[10] = (~sum >> 8) & 0xff, ip[11] = ~sum & 0xff;
    return 14 + 20 + 64;
}

/* Returns 0 if the child survived, else the signal or status that ended it. */
static int probe(int v6, unsigned frag) {
    pid_t pid = fork();
    if (pid == 0) {
        SlirpConfig c = {.version = 1, .in_enabled = 1, .in6_enabled = 1, .vprefix_len = 64};
        inet_pton(AF_INET, "10.0.2.0", &c.vnetwork), inet_pton(AF_INET, "255.255.255.0", &c.vnetmask);
        inet_pton(AF_INET, "10.0.2.2", &c.vhost), inet_pton(AF_INET, "10.0.2.15", &c.vdhcp_start);
        inet_pton(AF_INET, "10.0.2.3", &c.vnameserver), inet_pton(AF_INET6, "fec0::", &c.vprefix_addr6);
        inet_pton(AF_INET6, "fec0::2", &c.vhost6), inet_pton(AF_INET6, "fec0::3", &c.vnameserver6);
        SlirpCb cb = {.send_packet = out, .guest_error = err, .clock_get_ns = now, .timer_new = tnew,
                      .timer_free = tfree, .timer_mod = tmod, .register_poll_fd = fd_cb,
                      .unregister_poll_fd = fd_cb, .notify = notify};
        Slirp *s = slirp_new(&c, &cb, NULL);
        unsigned char f[128];
        slirp_input(s, f, frame(f, v6, frag));
        slirp_cleanup(s);
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st) ? 100 + WEXITSTATUS(st) : 0;
}

int main(void) {
    static const struct { const char *name; int v6; unsigned frag; int judged; } shapes[] = {
        {"IPv4 whole datagram", 0, 0x0000, 1},       {"IPv4 lone first fragment", 0, 0x2000, 1},
        {"IPv4 lone middle fragment", 0, 0x2064, 1}, {"IPv4 lone last fragment", 0, 0x0064, 0},
        {"IPv6 lone first fragment", 1, 0x0001, 1},  {"IPv6 lone middle fragment", 1, 0x0321, 1},
        {"IPv6 lone last fragment", 1, 0x0320, 1},
    };
    int bad = 0;
    printf("libslirp %s\n", slirp_version_string());
    for (unsigned i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        int r = probe(shapes[i].v6, shapes[i].frag);
        printf("%-28s %s", shapes[i].name, r == 0 ? "survived" : "KILLED");
        if (r >= 100) printf(" (status %d)", r - 100);
        else if (r) printf(" (signal %d: %s)", r, strsignal(r));
        printf("%s\n", shapes[i].judged ? "" : "  [micro86 guards this shape]");
        bad += r && shapes[i].judged;
    }
    return bad ? 1 : 0;
}
