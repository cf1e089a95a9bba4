#ifndef CMALLOCCOUNTER_H
#define CMALLOCCOUNTER_H
#include <stdint.h>
/// Number of malloc/calloc/realloc calls made by this process so far. The benchmark executable
/// links this target, whose malloc wrappers take precedence over libc's (ELF interposition) and
/// forward to glibc's __libc_* entry points.
uint64_t symphony_malloc_count(void);
#endif
