// Package rawsock makes a TCP connection's reads and writes without the Go
// scheduler's syscall bookkeeping.
//
// Why: every read and write through net enters the scheduler's syscall
// state. A server of small responses makes a few of those per request, and
// each one kept the runtime's monitor thread (sysmon) waking every 20 µs,
// retaking Ps from calls it saw in progress and waking other threads to run
// them: in the gateway under wrk, sysmon alone was a tenth of the CPU and
// the process made 2.5 times the context switches it makes with raw calls.
// A nonblocking socket never blocks in read(2) or write(2), so the
// bookkeeping buys nothing; EAGAIN still parks the goroutine in the
// netpoller, with the connection's deadlines, exactly as net does.
//
// Wrap changes only a stream's Read and Write; SendFile sends a file the
// same way. On other systems Wrap returns the connection as it is and
// SendFile declines.
package rawsock
