// Linux epoll(7) and eventfd(2), which the Glibc module does not export: the media I/O thread's
// event loop.
#include <sys/epoll.h>
#include <sys/eventfd.h>
