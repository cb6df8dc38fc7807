// C++ operator new/delete from libhakmem (tests/cxx.rs): built with g++ -std=c++17 and run
// preloaded (LD_PRELOAD), linked against libhakmem.so (-DHAKMEM_LINKED, includes hakmem.h),
// and linked against libhakmem.a (also -DHAKMEM_LINKED).
//
// Checks, each section closing with an `ok <section>` line:
// * provider: all twenty replaceable operators resolve to the object that defines hakmem_owns
//   (libhakmem.so, or this executable when linked statically), not to the C++ runtime;
// * new/delete, new[]/delete[] (also of objects with destructors: the sized array delete),
//   sized delete, nothrow forms: every block is hakmem's and usable for its size;
// * aligned forms (std::align_val_t, 16 B to 2 MiB, and alignas types): alignment honoured;
// * failure: a huge new throws std::bad_alloc that this program catches (plain, array,
//   aligned, aligned array), nothrow forms return nullptr, a new_handler runs before the
//   throw (and may throw an exception of its own, which reaches the caller).
// Prints `cxx: N checks, 0 failures`; exits 1 on any failure.
#include <dlfcn.h>
#include <malloc.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>
#include <vector>

#ifdef HAKMEM_LINKED
#include <hakmem.h>
static int (*owns)(const void *) = hakmem_owns;
#else
static int (*owns)(const void *) = nullptr;
#endif

static int checks, failures;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        checks++;                                                                    \
        if (!(cond)) {                                                               \
            failures++;                                                              \
            std::printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);              \
            std::fflush(stdout);                                                     \
        }                                                                            \
    } while (0)

// Sizes the optimizer cannot see (a huge constant `new` may be folded into a throw).
static std::size_t opaque(std::size_t n) {
    __asm__ volatile("" : "+r"(n));
    return n;
}
static void *opaque(void *p) {
    __asm__ volatile("" : "+r"(p)::"memory");
    return p;
}

static bool hakmem_block(void *p, std::size_t n) {
    return p != nullptr && owns(p) == 1 && malloc_usable_size(p) >= n;
}

static const void *object_of(const void *addr) {
    Dl_info info;
    if (dladdr(addr, &info) == 0)
        return nullptr;
    return info.dli_fbase;
}

#define OP(ret, name, ...) reinterpret_cast<const void *>(static_cast<ret (*)(__VA_ARGS__)>(name))

static void provider() {
    using std::align_val_t;
    using std::nothrow_t;
    using std::size_t;
    const void *ops[] = {
        OP(void *, ::operator new, size_t),
        OP(void *, ::operator new[], size_t),
        OP(void *, ::operator new, size_t, const nothrow_t &),
        OP(void *, ::operator new[], size_t, const nothrow_t &),
        OP(void *, ::operator new, size_t, align_val_t),
        OP(void *, ::operator new[], size_t, align_val_t),
        OP(void *, ::operator new, size_t, align_val_t, const nothrow_t &),
        OP(void *, ::operator new[], size_t, align_val_t, const nothrow_t &),
        OP(void, ::operator delete, void *),
        OP(void, ::operator delete[], void *),
        OP(void, ::operator delete, void *, size_t),
        OP(void, ::operator delete[], void *, size_t),
        OP(void, ::operator delete, void *, const nothrow_t &),
        OP(void, ::operator delete[], void *, const nothrow_t &),
        OP(void, ::operator delete, void *, align_val_t),
        OP(void, ::operator delete[], void *, align_val_t),
        OP(void, ::operator delete, void *, align_val_t, const nothrow_t &),
        OP(void, ::operator delete[], void *, align_val_t, const nothrow_t &),
        OP(void, ::operator delete, void *, size_t, align_val_t),
        OP(void, ::operator delete[], void *, size_t, align_val_t),
    };
    const void *hakmem = object_of(reinterpret_cast<const void *>(owns));
    CHECK(hakmem != nullptr);
    int i = 0;
    for (const void *op : ops) {
        bool ok = hakmem != nullptr && object_of(op) == hakmem;
        if (!ok)
            std::printf("FAIL operator #%d (%p) is not hakmem's\n", i, op);
        CHECK(ok);
        i++;
    }
    std::printf("ok provider\n");
}

struct Counted {
    static int live;
    std::uint64_t v[3];
    Counted() : v{1, 2, 3} { live++; }
    ~Counted() { live--; }
};
int Counted::live;

static void plain() {
    for (std::size_t n : {0ul, 1ul, 8ul, 24ul, 1000ul, 40000ul, 300000ul, 5ul << 20}) {
        void *p = ::operator new(opaque(n));
        CHECK(hakmem_block(p, n));
        std::memset(p, 0xab, n);
        ::operator delete(p);
        p = ::operator new(opaque(n));
        CHECK(hakmem_block(p, n));
        ::operator delete(p, n);
        p = ::operator new[](opaque(n));
        CHECK(hakmem_block(p, n));
        ::operator delete[](p);
        p = ::operator new[](opaque(n));
        CHECK(hakmem_block(p, n));
        ::operator delete[](p, n);
        p = ::operator new(opaque(n), std::nothrow);
        CHECK(hakmem_block(p, n));
        ::operator delete(p, std::nothrow);
        p = ::operator new[](opaque(n), std::nothrow);
        CHECK(hakmem_block(p, n));
        ::operator delete[](p, std::nothrow);
    }
    // Expressions: the compiler picks the forms (sized deletes under -fsized-deallocation).
    int *i = new int(7);
    CHECK(hakmem_block(i, sizeof *i) && *i == 7);
    delete i;
    // An array of objects with a destructor starts after the ABI's element-count cookie.
    Counted *c = new Counted[100];
    char *block = reinterpret_cast<char *>(c) - sizeof(std::size_t);
    CHECK(Counted::live == 100 && hakmem_block(block, 100 * sizeof *c + sizeof(std::size_t)));
    delete[] c;
    CHECK(Counted::live == 0);
    Counted *one = new (std::nothrow) Counted;
    CHECK(hakmem_block(one, sizeof *one));
    delete one;
    std::vector<std::uint64_t> v;
    for (int k = 0; k < 100000; k++)
        v.push_back(static_cast<std::uint64_t>(k));
    CHECK(hakmem_block(v.data(), v.size() * sizeof v[0]));
    std::printf("ok new/delete, sized, nothrow\n");
}

struct alignas(256) Wide {
    char b[300];
};
struct alignas(4096) Paged {
    char b[10];
};

static bool aligned_block(void *p, std::size_t n, std::size_t a) {
    return hakmem_block(p, n) && reinterpret_cast<std::uintptr_t>(p) % a == 0;
}

static void aligned() {
    for (std::size_t a = 16; a <= (2u << 20); a *= 2) {
        for (std::size_t n : {0ul, 1ul, 100ul, 5000ul, 70000ul}) {
            std::align_val_t al{a};
            void *p = ::operator new(opaque(n), al);
            CHECK(aligned_block(p, n, a));
            ::operator delete(p, al);
            p = ::operator new(opaque(n), al);
            CHECK(aligned_block(p, n, a));
            ::operator delete(p, n, al);
            p = ::operator new[](opaque(n), al);
            CHECK(aligned_block(p, n, a));
            ::operator delete[](p, al);
            p = ::operator new[](opaque(n), al);
            CHECK(aligned_block(p, n, a));
            ::operator delete[](p, n, al);
            p = ::operator new(opaque(n), al, std::nothrow);
            CHECK(aligned_block(p, n, a));
            ::operator delete(p, al, std::nothrow);
            p = ::operator new[](opaque(n), al, std::nothrow);
            CHECK(aligned_block(p, n, a));
            ::operator delete[](p, al, std::nothrow);
        }
    }
    Wide *w = new Wide;
    CHECK(aligned_block(w, sizeof *w, 256));
    delete w;
    Wide *ws = new Wide[5];
    CHECK(aligned_block(ws, 5 * sizeof *ws, 256));
    delete[] ws;
    Paged *pg = new (std::nothrow) Paged;
    CHECK(aligned_block(pg, sizeof *pg, 4096));
    delete pg;
    std::printf("ok aligned\n");
}

static const std::size_t HUGE_SIZE = static_cast<std::size_t>(PTRDIFF_MAX) - 4096;
static int handler_calls;

static void count_then_give_up() {
    handler_calls++;
    std::set_new_handler(nullptr);
}

struct Mine {
    int code;
};
static void throw_mine() { throw Mine{42}; }

template <typename F> static bool throws_bad_alloc(F f) {
    try {
        void *p = f();
        std::printf("FAIL no exception, got %p\n", p);
        return false;
    } catch (const std::bad_alloc &e) {
        return std::strlen(e.what()) > 0;
    } catch (...) {
        std::printf("FAIL another exception than bad_alloc\n");
        return false;
    }
}

static void failure() {
    std::size_t n = opaque(HUGE_SIZE);
    std::align_val_t al{opaque(4096)};
    CHECK(throws_bad_alloc([&] { return ::operator new(n); }));
    CHECK(throws_bad_alloc([&] { return ::operator new[](n); }));
    CHECK(throws_bad_alloc([&] { return ::operator new(n, al); }));
    CHECK(throws_bad_alloc([&] { return ::operator new[](n, al); }));
    CHECK(throws_bad_alloc([&] { return static_cast<void *>(new char[n]); }));
    CHECK(opaque(::operator new(n, std::nothrow)) == nullptr);
    CHECK(opaque(::operator new[](n, std::nothrow)) == nullptr);
    CHECK(opaque(::operator new(n, al, std::nothrow)) == nullptr);
    CHECK(opaque(::operator new[](n, al, std::nothrow)) == nullptr);
    CHECK(opaque(new (std::nothrow) char[n]) == nullptr);

    // The new_handler loop: called once, then (none left) bad_alloc.
    handler_calls = 0;
    std::set_new_handler(count_then_give_up);
    CHECK(throws_bad_alloc([&] { return ::operator new(n); }));
    CHECK(handler_calls == 1);
    handler_calls = 0;
    std::set_new_handler(count_then_give_up);
    CHECK(throws_bad_alloc([&] { return ::operator new[](n, al); }));
    CHECK(handler_calls == 1);
    handler_calls = 0;
    std::set_new_handler(count_then_give_up);
    CHECK(opaque(::operator new(n, std::nothrow)) == nullptr);
    CHECK(handler_calls == 1);

    // A handler's own exception reaches the caller through the operator.
    std::set_new_handler(throw_mine);
    int code = 0;
    try {
        opaque(::operator new(n, al));
    } catch (const Mine &m) {
        code = m.code;
    }
    std::set_new_handler(nullptr);
    CHECK(code == 42);

    // And allocation works afterwards.
    void *p = ::operator new(opaque(100));
    CHECK(hakmem_block(p, 100));
    ::operator delete(p);
    std::printf("ok bad_alloc, nothrow nullptr, new_handler\n");
}

int main() {
    if (owns == nullptr)
        owns = reinterpret_cast<int (*)(const void *)>(dlsym(RTLD_DEFAULT, "hakmem_owns"));
    if (owns == nullptr) {
        std::printf("FAIL hakmem_owns not found: is libhakmem.so preloaded?\n");
        std::printf("cxx: 1 checks, 1 failures\n");
        return 1;
    }
    provider();
    plain();
    aligned();
    failure();
    std::printf("cxx: %d checks, %d failures\n", checks, failures);
    return failures == 0 ? 0 : 1;
}
