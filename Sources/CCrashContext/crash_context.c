#define _GNU_SOURCE
#include "crash_context.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const int crash_signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGTRAP, SIGFPE, SIGABRT};
#define CRASH_SIGNAL_COUNT (sizeof(crash_signals) / sizeof(crash_signals[0]))
#define ALT_STACK_SIZE (64 * 1024)

static struct sigaction previous[CRASH_SIGNAL_COUNT];
static char daemon_name[64] = "daemon";
static int journal_prefix = 0;
static volatile sig_atomic_t installed = 0;
static volatile sig_atomic_t reporting = 0;

static __thread char context[CRASH_CONTEXT_MAX];
static __thread size_t context_length = 0;
static __thread int has_alt_stack = 0;

static pthread_key_t alt_stack_key;
static pthread_once_t alt_stack_once = PTHREAD_ONCE_INIT;

/// At thread exit: the thread's alternate stack is switched off and freed.
static void free_alt_stack(void *memory) {
    stack_t off = {.ss_flags = SS_DISABLE};
    sigaltstack(&off, NULL);
    free(memory);
}

static void make_alt_stack_key(void) { pthread_key_create(&alt_stack_key, free_alt_stack); }

static void ensure_alt_stack(void) {
    if (has_alt_stack) return;
    has_alt_stack = 1;
    stack_t current;
    if (sigaltstack(NULL, &current) == 0 && !(current.ss_flags & SS_DISABLE)) return;  // one is there
    void *memory = malloc(ALT_STACK_SIZE);
    if (memory == NULL) return;
    stack_t stack = {.ss_sp = memory, .ss_size = ALT_STACK_SIZE, .ss_flags = 0};
    if (sigaltstack(&stack, NULL) != 0) {
        free(memory);
        return;
    }
    pthread_once(&alt_stack_once, make_alt_stack_key);
    pthread_setspecific(alt_stack_key, memory);
}

static size_t append(char *line, size_t used, size_t capacity, const char *text, size_t length) {
    if (used >= capacity) return used;
    if (length > capacity - used) length = capacity - used;
    memcpy(line + used, text, length);
    return used + length;
}

static const char *signal_name(int signal) {
    switch (signal) {
    case SIGSEGV: return "SIGSEGV";
    case SIGBUS: return "SIGBUS";
    case SIGILL: return "SIGILL (a Swift runtime trap)";
    case SIGTRAP: return "SIGTRAP (a Swift runtime trap)";
    case SIGFPE: return "SIGFPE";
    case SIGABRT: return "SIGABRT";
    default: return "a fatal signal";
    }
}

void crash_context_report(int signal) {
    char line[512];
    size_t used = 0;
    if (journal_prefix) used = append(line, used, sizeof line, "<2>", 3);
    used = append(line, used, sizeof line, daemon_name, strlen(daemon_name));
    used = append(line, used, sizeof line, ": crashed with ", 15);
    const char *name = signal_name(signal);
    used = append(line, used, sizeof line, name, strlen(name));
    if (context_length > 0) {
        used = append(line, used, sizeof line, " while handling ", 16);
        used = append(line, used, sizeof line, context, context_length);
    } else {
        used = append(line, used, sizeof line, " outside any request or packet", 30);
    }
    if (used >= sizeof line) used = sizeof line - 1;
    line[used++] = '\n';
    size_t offset = 0;
    while (offset < used) {
        ssize_t written = write(2, line + offset, used - offset);
        if (written <= 0) break;
        offset += (size_t)written;
    }
}

static void on_crash(int signal, siginfo_t *info, void *ucontext) {
    if (!reporting) {
        reporting = 1;
        crash_context_report(signal);
    }
    // Hand over to what was there before (the Swift backtracer, or the default action).
    for (size_t i = 0; i < CRASH_SIGNAL_COUNT; i++) {
        if (crash_signals[i] != signal) continue;
        sigaction(signal, &previous[i], NULL);
        if (previous[i].sa_flags & SA_SIGINFO) {
            if (previous[i].sa_sigaction != NULL) {
                previous[i].sa_sigaction(signal, info, ucontext);
                return;
            }
        } else if (previous[i].sa_handler != SIG_DFL && previous[i].sa_handler != SIG_IGN) {
            previous[i].sa_handler(signal);
            return;
        }
        break;
    }
    // The default action: a fault re-runs the faulting instruction on return and dies of it;
    // a raised signal (abort) is raised again.
    struct sigaction fallback = {.sa_handler = SIG_DFL};
    sigemptyset(&fallback.sa_mask);
    sigaction(signal, &fallback, NULL);
    if (info == NULL || info->si_code <= 0) raise(signal);
}

void crash_context_install(const char *daemon, int journal) {
    if (installed) return;
    size_t length = strlen(daemon);
    if (length >= sizeof daemon_name) length = sizeof daemon_name - 1;
    memcpy(daemon_name, daemon, length);
    daemon_name[length] = '\0';
    journal_prefix = journal;
    ensure_alt_stack();
    for (size_t i = 0; i < CRASH_SIGNAL_COUNT; i++) {
        struct sigaction action;
        memset(&action, 0, sizeof action);
        action.sa_sigaction = on_crash;
        action.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&action.sa_mask);
        sigaction(crash_signals[i], &action, &previous[i]);
    }
    installed = 1;
}

void crash_context_set(const char *text, size_t length) {
    if (installed) ensure_alt_stack();
    if (length > CRASH_CONTEXT_MAX) length = CRASH_CONTEXT_MAX;
    // Control characters would break the one line: replaced as they are copied.
    for (size_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)text[i];
        context[i] = (c < 0x20 || c == 0x7F) ? '?' : (char)c;
    }
    context_length = length;
}

void crash_context_clear(void) { context_length = 0; }

size_t crash_context_get(char *out, size_t capacity) {
    size_t length = context_length < capacity ? context_length : capacity;
    memcpy(out, context, length);
    return length;
}
