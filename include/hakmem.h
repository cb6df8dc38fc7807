/*
 * hakmem.h: the extensions libhakmem.so (and libhakmem.a) export beyond the standard
 * malloc family.
 *
 * Link with `pkg-config --cflags --libs hakmem` (after `cargo xtask install`), or preload the
 * library into an unchanged program (`LD_PRELOAD=libhakmem.so`) and look these functions up
 * with dlsym(RTLD_DEFAULT, "hakmem_owns") etc.
 *
 * Also exported, and declared by the C library's own headers rather than here:
 *   <stdlib.h>  malloc, free, calloc, realloc, reallocarray, posix_memalign, aligned_alloc,
 *               free_sized, free_aligned_sized (C23; hakmem frees by the pointer alone, the
 *               size and alignment are not needed), valloc
 *   <malloc.h>  memalign, pvalloc, malloc_usable_size (exact: the block's class size),
 *               malloc_trim (gives every free slab and cached mapping back to the OS now,
 *               whatever the purge delay; returns 1; its argument is ignored)
 *   glibc's internal aliases __libc_malloc, __libc_free, __libc_calloc, __libc_realloc and
 *   __libc_memalign, which forward to the functions above.
 *
 * C++: libhakmem exports all twenty replaceable global operator new/delete forms (plain,
 * array, nothrow, sized delete, std::align_val_t aligned, aligned nothrow, sized aligned
 * delete), so a C++ program's new and delete are hakmem's too; no declaration is needed, the
 * C++ runtime declares them. Aligned forms honour the alignment. Deletes ignore the size and
 * alignment arguments (the pointer is enough). When hakmem cannot serve a request, the
 * operator passes it to the C++ runtime's own definition (libstdc++'s or libc++'s, found with
 * dlsym(RTLD_NEXT)), which retries through malloc, runs the std::new_handler loop and throws
 * std::bad_alloc (the nothrow forms: returns NULL): the standard semantics, with the
 * runtime's own exception. On x86-64 the exception reaches the caller; on other
 * architectures a throw out of a failing new aborts the process. Without any C++ runtime
 * definition in the process (a C++ runtime linked statically without its operators), a
 * failing throwing new prints one line and aborts; a failing nothrow new returns NULL.
 *
 * The functions declared here are thread-safe, async-signal-unsafe like malloc, and never
 * throw; hakmem_owns and hakmem_stats_format allocate nothing and take no lock
 * (hakmem_stats_json and hakmem_purge take hakmem's own locks, never libc's).
 */
#ifndef HAKMEM_H
#define HAKMEM_H

#include <stddef.h>
#include <stdint.h>

/* The version of hakmem this header comes with (the library's SONAME is libhakmem.so.0). */
#define HAKMEM_VERSION_MAJOR 0
#define HAKMEM_VERSION_MINOR 1
#define HAKMEM_VERSION_PATCH 0

#if defined(__cplusplus) && __cplusplus >= 201103L
#define HAKMEM_NOEXCEPT noexcept
#elif defined(__cplusplus)
#define HAKMEM_NOEXCEPT throw()
#else
#define HAKMEM_NOEXCEPT
#endif

#ifdef __cplusplus
extern "C" {
#endif

/*
 * 1 if `p` points into memory hakmem manages (any address inside one of its segments or
 * direct mappings: a block it handed out, live or free, or the space around it), else 0. Any value of `p` is allowed,
 * including NULL (0) and pointers from other allocators (0); nothing is dereferenced. A
 * program can use it to check that hakmem serves its allocations.
 */
int hakmem_owns(const void *p) HAKMEM_NOEXCEPT;

/*
 * Writes hakmem's counters as one line, `hakmem-stats: key=value key=value ...` (the same line
 * HAKMEM_STATS=1 prints at exit), into `buf`: at most `cap` bytes including a terminating NUL,
 * cut to fit. Returns the length of the whole line without the NUL, like snprintf: the line
 * was cut if the result is >= cap. `buf` may be NULL when `cap` is 0 (to learn the length).
 * The counters are read without stopping other threads, so they may be a moment apart.
 */
size_t hakmem_stats_format(char *buf, size_t cap) HAKMEM_NOEXCEPT;

/*
 * Testing and debugging: a guard-page block of `size` bytes (0 < size <= 4080), whatever the
 * sampling (HAKMEM_GUARD_SAMPLE) says. It ends exactly at an inaccessible page (its usable
 * size is `size` rounded up to 16) and its page becomes inaccessible once freed, so an
 * overflow past it or a use after its free stops the program at the bad access with a
 * one-line report. Free it with free(); realloc() and malloc_usable_size() work on it.
 * Returns NULL with errno = ENOMEM for any other size or when all 256 guarded blocks are live.
 */
void *hakmem_guarded_malloc(size_t size) HAKMEM_NOEXCEPT;

/*
 * Writes hakmem's statistics as one JSON object (the numbers HAKMEM_STATS=json prints at exit:
 * pid, bytes in use, resident, mapped, peak mapped, and per tier the bytes and blocks in use,
 * slabs, remote frees and purged bytes; keys documented in the hakmem_core::report docs) into
 * `buf`: at most `cap` bytes including a terminating NUL, cut to fit. Returns the length of
 * the whole object without the NUL, like snprintf. `buf` may be NULL when `cap` is 0.
 */
size_t hakmem_stats_json(char *buf, size_t cap) HAKMEM_NOEXCEPT;

/*
 * Reads the run-time option `name` into `*value`: "purge_delay_ms" (0..60000), "bigcache_budget"
 * (bytes) or "thp" (0 off, 1 auto, 2 on). Returns 0, or ENOENT for an unknown (or NULL) name,
 * EINVAL for a NULL `value`.
 */
int hakmem_option_get(const char *name, long *value) HAKMEM_NOEXCEPT;

/*
 * Sets the run-time option `name` (see hakmem_option_get) to `value`. Returns 0, ENOENT for an
 * unknown name, or EINVAL for a value out of the option's range (nothing changes then). The
 * purge delay applies from the next purge pass, the BigCache budget at once (a lower one evicts
 * down to it), THP to memory mapped afterwards.
 */
int hakmem_option_set(const char *name, long value) HAKMEM_NOEXCEPT;

/*
 * Gives every free slab, free page run and cached mapping back to the OS now, whatever the
 * purge delay (what malloc_trim does).
 */
void hakmem_purge(void) HAKMEM_NOEXCEPT;

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* HAKMEM_H */
