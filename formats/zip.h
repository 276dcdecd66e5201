/*
 * Zip container: a bounds-checked reader over a read-only mapping and a
 * writer of stored, 64-byte aligned entries (the layout torch.save uses).
 *
 * On-disk layout (PKWARE APPNOTE 6.3, the subset we read and write; all
 * integers little-endian):
 *
 *   [local header 1][data 1][data descriptor 1]? ... [central directory]
 *   [zip64 end of central directory record]? [zip64 locator]?
 *   [end of central directory record][comment]
 *
 *   local header (30 bytes + name + extra), signature "PK\3\4":
 *     u32 sig 0x04034b50, u16 version needed, u16 flags, u16 method
 *     (0 stored, 8 deflated), u16 time, u16 date, u32 crc32, u32 csize,
 *     u32 usize, u16 name_len, u16 extra_len, name, extra.
 *     Flag bit 3 means crc/sizes are zero here and follow the data in a
 *     descriptor ([u32 0x08074b50] u32 crc, u32|u64 csize, u32|u64 usize);
 *     torch >= 1.6 writes those. We always take crc and sizes from the
 *     central directory, which is authoritative.
 *   central directory entry (46 bytes + name + extra + comment), "PK\1\2":
 *     u32 sig 0x02014b50, u16 made by, u16 needed, u16 flags, u16 method,
 *     u16 time, u16 date, u32 crc, u32 csize, u32 usize, u16 name_len,
 *     u16 extra_len, u16 comment_len, u16 disk, u16 int attr, u32 ext attr,
 *     u32 local header offset, name, extra, comment.
 *   zip64 extended information extra field (id 0x0001): u64 usize,
 *     u64 csize, u64 local header offset, u32 disk -- each present only when
 *     the 32-bit field it extends is 0xffffffff (0xffff for the disk).
 *   end of central directory (22 bytes + comment), "PK\5\6":
 *     u32 sig 0x06054b50, u16 disk, u16 cd disk, u16 entries here,
 *     u16 entries, u32 cd size, u32 cd offset, u16 comment_len.
 *   zip64 locator (20 bytes, just before the EOCD), "PK\6\7":
 *     u32 sig 0x07064b50, u32 disk, u64 zip64 EOCD offset, u32 disks.
 *   zip64 EOCD (56 bytes + extensible data), "PK\6\6":
 *     u32 sig 0x06064b50, u64 record size, u16 made by, u16 needed,
 *     u32 disk, u32 cd disk, u64 entries here, u64 entries,
 *     u64 cd size, u64 cd offset.
 *
 * Alignment (as PyTorch's inline_container does it): the writer pads every
 * local header's extra field with an extra record of id "FB" (0x4246)
 * filled with 'Z' so that entry data starts at a multiple of 64 bytes and
 * can be used in place from a mapping.
 *
 * Multi-disk archives and encryption are rejected (SP_ERR_UNSUPPORTED);
 * methods other than stored and deflated are rejected on access.
 */
#ifndef SPARSIFY_FORMATS_ZIP_H
#define SPARSIFY_FORMATS_ZIP_H

#include "formats/ckpt_internal.h"

#define SP_ZIP_ALIGN 64

typedef struct sp_zip_entry {
    char *name;         /* NUL-terminated copy of the entry name */
    uint16_t method;    /* 0 stored, 8 deflated */
    uint16_t flags;     /* general purpose flags */
    uint32_t crc;       /* CRC-32 of the uncompressed data */
    uint64_t csize;     /* compressed size (== usize when stored) */
    uint64_t usize;     /* uncompressed size */
    uint64_t lho;       /* offset of the local header */
    uint64_t data_off;  /* offset of the (compressed) data */
    uint64_t cd_off;    /* offset of its central directory entry */
    uint32_t cd_len;    /* length of that entry (46 + name + extra + comment) */
    bool crc_ok;        /* stored: CRC verified already */
} sp_zip_entry;

typedef struct sp_zip {
    sp_mapfile mf;
    char *path;
    sp_zip_entry *entries; /* central directory order */
    size_t n;
    size_t *sorted;        /* entry indices sorted by name (for lookup) */
    uint64_t cd_off, cd_size;
    bool zip64;            /* the archive has a zip64 EOCD record */
    uint16_t z64_made_by, z64_needed; /* its version fields */
} sp_zip;

/* Map path and read its central directory and local headers, checking
 * every length and offset against the file size. Cheap: entry data is not
 * touched. Errors: SP_ERR_IO/SP_ERR_NOT_FOUND, SP_ERR_FORMAT, naming path. */
sp_status sp_zip_open(sp_zip *z, const char *path, sp_error *err);
/* The same over a mapping the zip takes over (closed with it, also on
 * failure); path names the archive in messages. */
sp_status sp_zip_open_map(sp_zip *z, const char *path, sp_mapfile *mf, sp_error *err);
/* Accepts a zeroed struct. */
void sp_zip_close(sp_zip *z);

/* Index of the entry named name, or -1. */
long sp_zip_find(const sp_zip *z, const char *name);

/* The uncompressed bytes of entry i. Stored: *data points into the
 * mapping and *owned is NULL (the CRC is checked on the first access).
 * Deflated: *data == *owned, a malloc'd buffer the caller frees. A zero
 * length entry gives a non-NULL *data. Errors: SP_ERR_FORMAT (bad CRC,
 * corrupt deflate stream, naming file and entry), SP_ERR_UNSUPPORTED
 * (other methods), SP_ERR_NOMEM. */
sp_status sp_zip_entry_data(sp_zip *z, size_t i, const void **data, void **owned,
                            sp_error *err);
/* Let the kernel drop the mapped pages of entry i's data. */
void sp_zip_entry_drop(const sp_zip *z, size_t i);
/* End of entry i's bytes in the file: data plus descriptor (if any). */
uint64_t sp_zip_entry_end(const sp_zip *z, size_t i);

/* ---- writer ---- */

/* One central directory record to be written. */
typedef struct sp_zipw_entry {
    char *name;
    uint16_t made_by, needed, flags, method, time, date;
    uint32_t crc;
    uint64_t csize, usize, lho;
    uint16_t iattr;
    uint32_t eattr;
    unsigned char *extra; /* extra fields other than zip64 (copied) */
    uint16_t extra_len;
    unsigned char *comment;
    uint16_t comment_len;
} sp_zipw_entry;

typedef struct sp_zipw {
    sp_outfile *of;        /* borrowed */
    sp_zipw_entry *ents;
    size_t n, cap;
    bool force_zip64;      /* write a zip64 EOCD even when not needed */
    uint16_t z64_made_by, z64_needed; /* zip64 EOCD versions (0: 45) */
} sp_zipw;

void sp_zipw_init(sp_zipw *w, sp_outfile *of);
void sp_zipw_release(sp_zipw *w);

/* Append a stored entry holding len bytes of data: local header (with
 * "FB" padding so data is 64-byte aligned, zip64 extra if needed), data,
 * and its central directory record. */
sp_status sp_zipw_add_stored(sp_zipw *w, const char *name, const void *data, uint64_t len,
                             sp_error *err);
/* Register a central directory record for bytes the caller wrote itself
 * (copied entries); e is copied (name, extra and comment too). */
sp_status sp_zipw_add_record(sp_zipw *w, const sp_zipw_entry *e, sp_error *err);
/* A central directory record copied from entry i of z (fields, name,
 * non-zip64 extras, comment), to be adjusted by the caller and passed to
 * sp_zipw_add_record; release with sp_zipw_entry_release. */
sp_status sp_zip_entry_record(const sp_zip *z, size_t i, sp_zipw_entry *e, sp_error *err);
void sp_zipw_entry_release(sp_zipw_entry *e);
/* Write the central directory, the zip64 records when needed (more than
 * 65535 entries or offsets/sizes past 4 GiB, or force_zip64) and the EOCD. */
sp_status sp_zipw_finish(sp_zipw *w, sp_error *err);

#endif
