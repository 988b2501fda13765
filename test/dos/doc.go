// Package dos is the denial-of-service suite (`make dos`): it starts its own
// origin and gateway (bin/stella-mirror) on loopback, attacks the gateway
// with hostile HTTP/1.1 and HTTP/2 clients (idle connections under a low
// descriptor limit, zero-window and slow-reader stalls, pipelining without
// reading, rapid reset, CONTINUATION floods, header bombs, Slowloris, a
// wrong-password flood) and checks, per scenario, that the gateway and the
// origin stay up, that the gateway's peak RSS stays under a bound, that its
// descriptors return to the pre-attack baseline once the attack stops, and
// that a legitimate client on another loopback address keeps a low median
// latency during the attack.
//
// Every attack is bounded in time and count, all traffic goes to 127.0.0.1
// (the legitimate client binds 127.0.0.2), and every process the suite
// starts is stopped before it returns. The suite is not part of `make test`:
// the package's own tests cover only its pure helpers.
package dos
