/* net_guest: a guest program for tests/e2e/virtio.py's net-frag scenario (issue 19), built on the
 * host with gcc -static and added to the initramfs as /bin/net_guest.
 *   net_guest udp8k ADDR PORT   sends one 8 KiB UDP datagram (the kernel cuts it into IPv4
 *                               fragments) and waits for an 8 KiB answer: prints UDP8K=ok, or why not
 *   net_guest frags             sends, through a packet socket on eth0, the frames that reach
 *                               libslirp's reassembly unguarded: lone last (issue 19's frame), first
 *                               and middle IPv4 fragments, an overlapping pair, one ending past 64 KiB,
 *                               and lone IPv6 fragments; prints FRAGS-SENT=N
 * Frames follow RFC 791 (IPv4) and RFC 8200 (IPv6 fragment header). */
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netpacket/packet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static int udp8k(const char *addr, int port) {
    unsigned char out[8192], in[9000];
    for (int i = 0; i < 8192; i++) out[i] = (unsigned char)(i * 7 + i / 251);
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct timeval tv = {5, 0};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, addr, &a.sin_addr);
    if (sendto(s, out, sizeof out, 0, (struct sockaddr *)&a, sizeof a) != sizeof out) return printf("UDP8K=send failed\n"), 1;
    ssize_t n = recv(s, in, sizeof in, 0);
    /* The host's answer: the same bytes, reversed. */
    int same = n == 8192;
    for (int i = 0; same && i < 8192; i++) same = in[i] == out[8191 - i];
    printf(same ? "UDP8K=ok\n" : "UDP8K=answer of %zd bytes\n", n);
    return !same;
}

/* An IPv4 UDP packet 10.0.2.15 -> 10.0.2.2 with flags/offset `frag`, id `id`, `len` data bytes. */
static int ipv4(unsigned char *p, unsigned frag, unsigned id, int len) {
    memset(p, 0, 20 + len);
    p[0] = 0x45, p[2] = (20 + len) >> 8, p[3] = (20 + len) & 0xff, p[4] = id >> 8, p[5] = id & 0xff;
    p[6] = frag >> 8, p[7] = frag & 0xff, p[8] = 64, p[9] = 17;
    p[12] = 10, p[14] = 2, p[15] = 15, p[16] = 10, p[18] = 2, p[19] = 2;
    unsigned sum = 0;
    for (int i = 0; i < 20; i += 2) sum += p[i] << 8 | p[i + 1];
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    p[10] = (~sum >> 8) & 0xff, p[11] = ~sum & 0xff;
    return 20 + len;
}

/* An IPv6 packet to fec0::2 whose fixed header is followed by a fragment header. */
static int ipv6(unsigned char *p, unsigned offset, int more, int len) {
    memset(p, 0, 48 + len);
    p[0] = 0x60, p[4] = (8 + len) >> 8, p[5] = (8 + len) & 0xff, p[6] = 44, p[7] = 64;
    p[8] = 0xfe, p[9] = 0x80, p[23] = 0x0f, p[24] = 0xfe, p[25] = 0xc0, p[39] = 2;
    p[40] = 17, p[42] = (offset << 3) >> 8, p[43] = ((offset << 3) & 0xf8) | (more ? 1 : 0), p[47] = 0x19;
    return 48 + len;
}

static int frags(void) {
    int s = socket(AF_PACKET, SOCK_DGRAM, 0);
    if (s < 0) return perror("packet socket"), 1;
    struct sockaddr_ll to = {.sll_family = AF_PACKET, .sll_ifindex = (int)if_nametoindex("eth0"), .sll_halen = 6};
    memset(to.sll_addr, 0xff, 6);
    static const struct { unsigned frag, id; int len; } v4[] = {
        {0x0064, 0x1901, 64},                   /* issue 19: MF clear, offset 100 * 8 */
        {0x2000, 0x1902, 64}, {0x2064, 0x1903, 64}, /* lone first, lone middle */
        {0x0001, 0x1904, 3},                    /* lone last, 3 bytes at offset 8 */
        {0x2000, 0x1905, 64}, {0x0004, 0x1905, 64}, /* an overlapping pair */
        {0x1fff, 0x1906, 64},                   /* ends past 65535 bytes */
    };
    unsigned char p[256];
    int sent = 0;
    to.sll_protocol = htons(0x0800);
    for (unsigned i = 0; i < sizeof v4 / sizeof v4[0]; i++)
        sent += sendto(s, p, ipv4(p, v4[i].frag, v4[i].id, v4[i].len), 0, (struct sockaddr *)&to, sizeof to) > 0;
    to.sll_protocol = htons(0x86dd);
    sent += sendto(s, p, ipv6(p, 0, 1, 64), 0, (struct sockaddr *)&to, sizeof to) > 0;
    sent += sendto(s, p, ipv6(p, 100, 0, 64), 0, (struct sockaddr *)&to, sizeof to) > 0;
    printf("FRAGS-SENT=%d\n", sent);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "udp8k")) return udp8k(argv[2], atoi(argv[3]));
    if (argc == 2 && !strcmp(argv[1], "frags")) return frags();
    fprintf(stderr, "usage: net_guest udp8k ADDR PORT | net_guest frags\n");
    return 2;
}
