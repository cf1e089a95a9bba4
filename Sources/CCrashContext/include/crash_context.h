// What each thread of a daemon is handling, for the one line a crash leaves in the journal
// (docs/RELIABILITY.md, "Defense in depth"). C, because the line is written from a signal
// handler: only async-signal-safe calls (write(2), sigaction(2), raise(3)) and memory set up
// beforehand.
#ifndef SYMPHONY_CRASH_CONTEXT_H
#define SYMPHONY_CRASH_CONTEXT_H

#include <stddef.h>

/// The longest context kept per thread (longer text is cut).
#define CRASH_CONTEXT_MAX 240

/// Installs the handlers for SIGSEGV, SIGBUS, SIGILL, SIGTRAP, SIGFPE and SIGABRT, chained to
/// whatever was installed before (the Swift runtime's backtracer), and an alternate signal stack
/// for the calling thread. `daemon` names the process in the line; `journal` non-zero prefixes
/// the line with the syslog priority <2> (critical), as the daemon's log lines are under journald.
void crash_context_install(const char *daemon, int journal);

/// Sets what the calling thread handles now (copied; at most CRASH_CONTEXT_MAX bytes). The first
/// call on a thread gives it an alternate signal stack, so a stack overflow is reported too.
void crash_context_set(const char *text, size_t length);

/// The thread handles nothing in particular now.
void crash_context_clear(void);

/// The calling thread's context as it would be printed (for tests); returns its length.
size_t crash_context_get(char *out, size_t capacity);

/// Writes the crash line for `signal` to fd 2 as the handler would (for tests).
void crash_context_report(int signal);

#endif
