/*
 * Python pickles, the subset torch.save and torch.jit.save emit: a safe
 * reader that builds a value tree without executing anything, and a
 * protocol-2 writer for such trees.
 *
 * Format: a byte stream of opcodes (one byte each, followed by inline
 * arguments, little-endian unless noted) run by a stack machine; STOP ends
 * it and leaves the result on the stack. The reader handles:
 *   PROTO 0x80 u8 | FRAME 0x95 u64 | MARK '(' | STOP '.' | POP '0' |
 *   POP_MARK '1' | DUP '2' | BININT 'J' i32 | BININT1 'K' u8 |
 *   BININT2 'M' u16 | LONG1 0x8a u8 n, n bytes two's complement |
 *   LONG4 0x8b i32 n, n bytes | BINFLOAT 'G' f64 big-endian |
 *   SHORT_BINUNICODE 0x8c u8 len | BINUNICODE 'X' u32 len |
 *   BINUNICODE8 0x8d u64 len | SHORT_BINBYTES 'C' u8 | BINBYTES 'B' u32 |
 *   BINBYTES8 0x8e u64 | SHORT_BINSTRING 'U' u8 | BINSTRING 'T' i32 |
 *   NONE 'N' | NEWTRUE 0x88 | NEWFALSE 0x89 | EMPTY_LIST ']' | APPEND 'a' |
 *   APPENDS 'e' | EMPTY_TUPLE ')' | TUPLE 't' | TUPLE1-3 0x85-0x87 |
 *   EMPTY_DICT '}' | SETITEM 's' | SETITEMS 'u' | EMPTY_SET 0x8f |
 *   ADDITEMS 0x90 | FROZENSET 0x91 | GLOBAL 'c' "module\nname\n" |
 *   STACK_GLOBAL 0x93 | REDUCE 'R' | BUILD 'b' | NEWOBJ 0x81 |
 *   BINPUT 'q' u8 | LONG_BINPUT 'r' u32 | BINGET 'h' u8 |
 *   LONG_BINGET 'j' u32 | MEMOIZE 0x94 | BINPERSID 'Q' | PERSID 'P' line.
 *
 * Calls (REDUCE, NEWOBJ, BUILD) are recorded, never run: a REDUCE becomes a
 * node holding the callable, the arguments and any later BUILD state or
 * APPENDS/SETITEMS items. One exception: `collections.OrderedDict()` (empty
 * arguments) becomes an ordered dict node, since state dicts are built that
 * way. Memo references (BINGET) share the node; the tree is a DAG.
 *
 * Hostile input gets SP_ERR_FORMAT: unknown opcodes (named with their
 * offset), truncation, lengths past the end, stacks or marks deeper than
 * SP_PICKLE_MAX_DEPTH containers, memo indices out of range. No allocation
 * is larger than a small multiple of the input size.
 */
#ifndef SPARSIFY_FORMATS_PICKLE_H
#define SPARSIFY_FORMATS_PICKLE_H

#include "sparsify/common.h"

#define SP_PICKLE_MAX_DEPTH 1000

typedef enum sp_pk_kind {
    SP_PK_NONE,
    SP_PK_BOOL,
    SP_PK_INT,       /* fits int64 */
    SP_PK_BIGINT,    /* LONG1/LONG4 wider than 64 bits: raw bytes in s */
    SP_PK_FLOAT,
    SP_PK_STR,       /* UTF-8 bytes in s (NUL-terminated copy) */
    SP_PK_BYTES,
    SP_PK_LIST,
    SP_PK_TUPLE,
    SP_PK_DICT,      /* items: k0, v0, k1, v1, ...; ordered: OrderedDict */
    SP_PK_SET,
    SP_PK_FROZENSET,
    SP_PK_GLOBAL,    /* s = module, s2 = name */
    SP_PK_REDUCE,    /* callable(*args), then state/items */
    SP_PK_NEWOBJ,    /* callable.__new__(callable, *args), then state/items */
    SP_PK_PERSID,    /* persistent id: pid (usually a tuple) */
} sp_pk_kind;

typedef struct sp_pk sp_pk;
struct sp_pk {
    sp_pk_kind kind;
    bool b;
    bool ordered;      /* DICT: from collections.OrderedDict */
    bool pairs;        /* REDUCE/NEWOBJ: items came from SETITEM(S) */
    int64_t i;
    double f;
    char *s, *s2;      /* STR/BYTES/BIGINT data, GLOBAL module and name */
    size_t slen;
    sp_pk **items;     /* LIST/TUPLE/SET: elements; DICT: k,v pairs;
                          REDUCE/NEWOBJ: appended items or k,v pairs */
    size_t n, cap;     /* n counts pointers (2 per dict entry) */
    sp_pk *callable;   /* REDUCE/NEWOBJ */
    sp_pk *args;       /* REDUCE/NEWOBJ: the argument tuple; PERSID: pid */
    sp_pk *state;      /* BUILD state, or NULL */
    uint32_t depth;    /* containers below (for the nesting limit) */
};

/* All nodes of one parse (or one tree being built); freed together. */
typedef struct sp_pickle {
    sp_pk *root;
    sp_pk **all;
    size_t nall, capall;
} sp_pickle;

/* Parse one pickle from buf[0..len). *consumed (may be NULL) receives the
 * offset just past STOP, so consecutive pickles in one stream can be read.
 * what names the source in messages ("'model.pt': data.pkl").
 * On failure pk is released. */
sp_status sp_pickle_parse(sp_pickle *pk, const void *buf, size_t len, size_t *consumed,
                          const char *what, sp_error *err);
/* Free every node; accepts a zeroed struct. */
void sp_pickle_release(sp_pickle *pk);

/* Tree building (for writers). Nodes belong to pk. NULL when out of memory. */
sp_pk *sp_pk_new(sp_pickle *pk, sp_pk_kind kind);
sp_pk *sp_pk_int(sp_pickle *pk, int64_t v);
sp_pk *sp_pk_str(sp_pickle *pk, const char *s);
sp_pk *sp_pk_global(sp_pickle *pk, const char *module, const char *name);
/* Append child to a LIST/TUPLE/DICT/SET node's items. */
bool sp_pk_push(sp_pk *node, sp_pk *child);

/* Serialize root as pickle protocol 2 into a malloc'd buffer (*out, *len;
 * caller frees). Nodes reachable more than once are written once and then
 * fetched from the memo, so shared objects stay shared. */
sp_status sp_pickle_write(const sp_pk *root, unsigned char **out, size_t *len, sp_error *err);

/* Helpers for walkers. */
bool sp_pk_is_global(const sp_pk *n, const char *module, const char *name);
/* Item i of a TUPLE/LIST, or NULL when out of range or not a sequence. */
const sp_pk *sp_pk_item(const sp_pk *n, size_t i);

#endif
