/* portutil.h: socket checks, /proc reads and the client side of the port
 * server protocol, shared by the picker (picker.c) and the server
 * (portserver.c). */
#ifndef MC_PORTS_PORTUTIL_H
#define MC_PORTS_PORTUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <minicluster/status.h>

/* Binds port (0: the kernel chooses) on every address family the host has
 * (one dual-stack IPv6 socket where possible, else IPv6 then IPv4 as
 * portpicker does), with sockets of type socktype. reuseaddr sets
 * SO_REUSEADDR as portpicker does; without it a TIME_WAIT port or one bound
 * by a socket that does not listen yet counts as busy. Every socket is shut
 * down and closed. Returns the port, or 0 when it is busy or no family
 * works. */
int mc__port_bind(int port, int socktype, int reuseaddr);

/* 1 when something accepts TCP connections on 127.0.0.1:port or
 * [::1]:port, else 0. */
int mc__port_accepts(int port);

/* 1 when something accepts TCP connections on 127.0.0.1:port. */
int mc__port_accepts_v4(int port);

/* mc__port_accepts_v4 with a reusable probe socket (*probe, -1 at first):
 * Linux lets a TCP socket whose connect was refused connect again, which
 * saves a socket() and a close() per check. The caller closes *probe when
 * done (if >= 0). */
int mc__port_accepts_probe(int *probe, int port);

/* mc__port_free_strict with a reusable probe socket. */
int mc__port_free_probe(int *probe, int port);

/* The sockets that keep a port bound on TCP and UDP (-1: unused slot). */
typedef struct mc__port_hold {
  int fd[4];
} mc__port_hold;

/* mc__port_free_probe that keeps the port: on success (1) the TCP and UDP
 * sockets stay bound in *h, so nobody else can bind the port until
 * mc__port_hold_release; on 0 (busy) nothing is held. */
int mc__port_hold_free(int *probe, int port, mc__port_hold *h);

/* Closes the sockets of *h (the port is free again once this returns). */
void mc__port_hold_release(mc__port_hold *h);

/* TCP and UDP bind without SO_REUSEADDR, then mc__port_accepts_v4. */
int mc__port_free_strict(int port);

/* Reads the start time (field 22 of /proc/<pid>/stat, clock ticks since
 * boot) into *start. Returns 0, or -1 when the process does not exist. */
int mc__proc_start_time(int pid, unsigned long long *start);

/* Parses a port server address: "@name" is an abstract socket, anything
 * else a path. Fills *sa and *len. Returns MC_OK or MC_INVALID_ARGUMENT
 * naming the address (empty, "@" alone, too long). */
mc_code mc__portserver_sockaddr(const char *address, struct sockaddr_un *sa,
                                socklen_t *len);

/* One exchange with a port server: connect, send request (a full line),
 * read until the server closes (or a newline), all within timeout_ms.
 * reply gets a NUL-terminated copy (at most cap-1 bytes). Returns MC_OK
 * (reply may be empty: refused), MC_INVALID_ARGUMENT for a malformed
 * address, MC_UNAVAILABLE naming the address when it cannot be reached or
 * the connection fails, MC_DEADLINE_EXCEEDED when it does not answer. */
mc_code mc__portserver_exchange(const char *address, const char *request,
                                int timeout_ms, char *reply, size_t cap);

/* Asks the server at address for a port for pid, like portpicker's client
 * but on a connection kept open between calls (the request is "+<pid>\n",
 * which portpicker's server reads as "<pid>\n" before closing as usual;
 * ours keeps the connection and answers a refusal with "0\n"). When the
 * kept connection turns out closed, asks once more on a new one, within the
 * same timeout. Thread-safe: a thread that finds the connection in use
 * makes its own, closed after the reply. reply as for
 * mc__portserver_exchange; same results. */
mc_code mc__portserver_pick(const char *address, int pid, int timeout_ms,
                            char *reply, size_t cap);

/* The kinds of request lines the port server understands. */
enum {
  MC__REQ_INVALID = 0,
  MC__REQ_PID,   /* "<pid>": portpicker's request */
  MC__REQ_STATS, /* "stats" */
  MC__REQ_RETURN /* "return <port>" */
};

/* Parses one request line (without its newline; a NUL ends it). For PID
 * and RETURN, *value gets the number. A pid is read as Python's int() reads
 * it for portpicker's server: optional surrounding whitespace and sign, then
 * decimal digits, at most 20 characters in all; magnitudes above 10^12 are
 * invalid. Returns an MC__REQ_ kind. */
int mc__portserver_parse_request(const char *line, long long *value);

/* Parses a server's reply as portpicker does (the text before the first
 * newline). Returns 1 with *port in 1..65535, 0 for a refusal (empty or
 * "0"), -1 for anything else. */
int mc__portserver_parse_reply(const char *reply, int *port);

#endif
