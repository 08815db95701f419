/* A stand-in for ip(8) and tc(8), which the test VMs lack (busybox's ip
 * has no XDP): one netlink request, as iproute2 sends it.
 *   nl xdp IFINDEX FD      RTM_SETLINK IFLA_XDP {FD, FLAGS skb} (FD -1: detach)
 *   nl tcdel IFINDEX PRIO  RTM_DELTFILTER of clsact ingress filters at PRIO
 *   nl hold                holds its fd 3 until stdin's end, then closes it
 *                          (before exiting, so that it still has its mm)
 * Prints the kernel's answer (0 or a negative errno) and exits 0 when the
 * request was answered at all. */
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/pkt_sched.h>
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static char buf[4096];

static void attr(struct nlmsghdr *n, unsigned short type, const void *data, int len)
{
	struct rtattr *a = (struct rtattr *)((char *)n + NLMSG_ALIGN(n->nlmsg_len));

	a->rta_type = type;
	a->rta_len = RTA_LENGTH(len);
	if (len)
		memcpy(RTA_DATA(a), data, len);
	n->nlmsg_len = NLMSG_ALIGN(n->nlmsg_len) + RTA_ALIGN(a->rta_len);
}

int main(int argc, char **argv)
{
	struct nlmsghdr *n = (struct nlmsghdr *)buf;
	struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
	int fd, got;

	if (argc == 2 && strcmp(argv[1], "hold") == 0) {
		while (read(0, buf, sizeof(buf)) > 0)
			;
		close(3);
		return 0;
	}
	if (argc != 4) {
		fprintf(stderr, "usage: nl xdp IFINDEX FD | nl tcdel IFINDEX PRIO\n");
		return 2;
	}
	memset(buf, 0, sizeof(buf));
	n->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
	n->nlmsg_seq = 1;
	if (strcmp(argv[1], "xdp") == 0) {
		struct ifinfomsg *ifi = NLMSG_DATA(n);
		struct rtattr *nest;
		int pfd = atoi(argv[3]);
		unsigned int flags = XDP_FLAGS_SKB_MODE;

		n->nlmsg_type = RTM_SETLINK;
		n->nlmsg_len = NLMSG_LENGTH(sizeof(*ifi));
		ifi->ifi_family = AF_UNSPEC;
		ifi->ifi_index = atoi(argv[2]);
		nest = (struct rtattr *)((char *)n + NLMSG_ALIGN(n->nlmsg_len));
		attr(n, IFLA_XDP | NLA_F_NESTED, 0, 0);
		attr(n, IFLA_XDP_FD, &pfd, sizeof(pfd));
		attr(n, IFLA_XDP_FLAGS, &flags, sizeof(flags));
		nest->rta_len = (char *)n + n->nlmsg_len - (char *)nest;
	} else if (strcmp(argv[1], "tcdel") == 0) {
		struct tcmsg *tc = NLMSG_DATA(n);

		n->nlmsg_type = RTM_DELTFILTER;
		n->nlmsg_len = NLMSG_LENGTH(sizeof(*tc));
		tc->tcm_family = AF_UNSPEC;
		tc->tcm_ifindex = atoi(argv[2]);
		tc->tcm_parent = TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS);
		tc->tcm_info = TC_H_MAKE((unsigned)atoi(argv[3]) << 16, htons(ETH_P_ALL));
	} else {
		fprintf(stderr, "nl: unknown request %s\n", argv[1]);
		return 2;
	}
	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (fd < 0 || sendto(fd, n, n->nlmsg_len, 0, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("nl: netlink");
		return 1;
	}
	got = recv(fd, buf, sizeof(buf), 0);
	if (got < (int)NLMSG_LENGTH(sizeof(struct nlmsgerr)) || n->nlmsg_type != NLMSG_ERROR) {
		fprintf(stderr, "nl: no answer\n");
		return 1;
	}
	printf("%d\n", ((struct nlmsgerr *)NLMSG_DATA(n))->error);
	return 0;
}
