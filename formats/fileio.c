/*
 * File helpers for every format: read-only mappings whose pages can be
 * dropped again (so walking a large checkpoint keeps memory flat), atomic
 * output files and folders (never a partial output), and CRC-32.
 */
#include "formats/ckpt_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

sp_status sp_mapfile_open(sp_mapfile *mf, const char *path, sp_error *err)
{
    memset(mf, 0, sizeof *mf);
    mf->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (mf->fd < 0)
        return sp_error_set(err, errno == ENOENT ? SP_ERR_NOT_FOUND : SP_ERR_IO,
                            "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(mf->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(mf->fd);
        mf->fd = -1;
        return sp_error_set(err, SP_ERR_IO, "cannot read '%s': not a regular file", path);
    }
    mf->size = (uint64_t)st.st_size;
    if (mf->size > 0) {
        void *p = mmap(NULL, mf->size, PROT_READ, MAP_PRIVATE, mf->fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(mf->fd);
            mf->fd = -1;
            return sp_error_set(err, SP_ERR_IO, "cannot map '%s': %s", path, strerror(e));
        }
        mf->data = p;
    }
    return SP_OK;
}

void sp_mapfile_mem(sp_mapfile *mf, const void *data, uint64_t size)
{
    memset(mf, 0, sizeof *mf);
    mf->fd = -1;
    mf->data = size ? data : NULL;
    mf->size = size;
    mf->borrowed = true;
}

sp_status sp_ckpt_map(const sp_ckpt *ck, sp_mapfile *mf, sp_error *err)
{
    if (ck->in_mem) {
        sp_mapfile_mem(mf, ck->mem, ck->mem_size);
        return SP_OK;
    }
    return sp_mapfile_open(mf, ck->path, err);
}

void sp_mapfile_drop(const sp_mapfile *mf, uint64_t off, uint64_t len)
{
    if (mf->borrowed || !mf->data || len == 0 || off >= mf->size)
        return;
    long pg = sysconf(_SC_PAGESIZE);
    uint64_t start = (off + (uint64_t)pg - 1) / (uint64_t)pg * (uint64_t)pg;
    uint64_t end = off + len > mf->size ? mf->size : off + len;
    end = end / (uint64_t)pg * (uint64_t)pg;
    if (end > start)
        madvise((void *)(mf->data + start), end - start, MADV_DONTNEED);
}

void sp_mapfile_close(sp_mapfile *mf)
{
    if (mf->data && !mf->borrowed)
        munmap((void *)mf->data, mf->size);
    if (mf->fd >= 0)
        close(mf->fd);
    mf->data = NULL;
    mf->fd = -1;
}

static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

sp_status sp_outfile_open(sp_outfile *of, const char *path, sp_error *err)
{
    memset(of, 0, sizeof *of);
    of->fd = -1;
    of->path = strdup(path);
    char *dir = dir_of(path);
    if (!of->path || !dir) {
        free(dir);
        free(of->path);
        of->path = NULL;
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    }
#ifdef O_TMPFILE
    /* Unnamed: nothing is left behind if we are killed before commit. */
    of->fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
#endif
    if (of->fd < 0) {
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        size_t n = strlen(dir) + strlen(base) + 64;
        of->tmp_path = malloc(n);
        if (!of->tmp_path) {
            free(dir);
            return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        }
        snprintf(of->tmp_path, n, "%s/.%s.sparsify-tmp-%ld", dir, base, (long)getpid());
        of->fd = open(of->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    }
    if (of->fd < 0) {
        int e = errno;
        free(dir);
        free(of->tmp_path);
        free(of->path);
        memset(of, 0, sizeof *of);
        of->fd = -1;
        return sp_error_set(err, SP_ERR_IO, "cannot create '%s': %s", path, strerror(e));
    }
    free(dir);
    return SP_OK;
}

sp_status sp_outfile_write(sp_outfile *of, const void *buf, size_t len, sp_error *err)
{
    const unsigned char *p = buf;
    while (len > 0) {
        size_t chunk = len > (1u << 30) ? (1u << 30) : len;
        ssize_t w = write(of->fd, p, chunk);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return sp_error_set(err, SP_ERR_IO, "cannot write '%s': %s", of->path,
                                strerror(errno));
        }
        p += w;
        len -= (size_t)w;
        of->pos += (uint64_t)w;
    }
    return SP_OK;
}

sp_status sp_outfile_pad(sp_outfile *of, uint64_t align, sp_error *err)
{
    static const unsigned char zeros[4096];
    uint64_t rem = of->pos % align;
    if (rem == 0)
        return SP_OK;
    uint64_t need = align - rem;
    while (need > 0) {
        size_t n = need > sizeof zeros ? sizeof zeros : (size_t)need;
        sp_status st = sp_outfile_write(of, zeros, n, err);
        if (st)
            return st;
        need -= n;
    }
    return SP_OK;
}

sp_status sp_outfile_pwrite(sp_outfile *of, const void *buf, size_t len, uint64_t off,
                            sp_error *err)
{
    const unsigned char *p = buf;
    while (len > 0) {
        ssize_t w = pwrite(of->fd, p, len, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return sp_error_set(err, SP_ERR_IO, "cannot write '%s': %s", of->path,
                                strerror(errno));
        }
        p += w;
        off += (uint64_t)w;
        len -= (size_t)w;
    }
    return SP_OK;
}

sp_status sp_outfile_commit(sp_outfile *of, sp_error *err)
{
    sp_status st = SP_OK;
    if (of->fd < 0)
        return sp_error_set(err, SP_ERR_IO, "'%s': output already closed", of->path);
    if (!of->tmp_path) {
        /* Give the unnamed file a hidden name, then rename it over path. */
        char *dir = dir_of(of->path);
        const char *base = strrchr(of->path, '/');
        base = base ? base + 1 : of->path;
        size_t n = strlen(dir) + strlen(base) + 64;
        char *tmp = malloc(n);
        char proc[64];
        if (!tmp || !dir) {
            free(dir);
            free(tmp);
            return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        }
        snprintf(tmp, n, "%s/.%s.sparsify-tmp-%ld", dir, base, (long)getpid());
        free(dir);
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", of->fd);
        unlink(tmp);
        if (linkat(AT_FDCWD, proc, AT_FDCWD, tmp, AT_SYMLINK_FOLLOW) != 0) {
            st = sp_error_set(err, SP_ERR_IO, "cannot write '%s': %s", of->path,
                              strerror(errno));
            free(tmp);
            return st;
        }
        of->tmp_path = tmp;
    }
    if (close(of->fd) != 0)
        st = sp_error_set(err, SP_ERR_IO, "cannot write '%s': %s", of->path, strerror(errno));
    of->fd = -1;
    if (!st && rename(of->tmp_path, of->path) != 0)
        st = sp_error_set(err, SP_ERR_IO, "cannot rename onto '%s': %s", of->path,
                          strerror(errno));
    if (st)
        unlink(of->tmp_path);
    free(of->tmp_path);
    free(of->path);
    of->tmp_path = of->path = NULL;
    return st;
}

void sp_outfile_abort(sp_outfile *of)
{
    if (of->fd >= 0)
        close(of->fd);
    if (of->tmp_path)
        unlink(of->tmp_path);
    free(of->tmp_path);
    free(of->path);
    of->tmp_path = of->path = NULL;
    of->fd = -1;
}

static void rm_tree(const char *path)
{
    DIR *d = opendir(path);
    if (!d) {
        unlink(path);
        return;
    }
    struct dirent *e;
    char buf[PATH_MAX];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(buf, sizeof buf, "%s/%s", path, e->d_name);
        struct stat st;
        if (lstat(buf, &st) == 0 && S_ISDIR(st.st_mode))
            rm_tree(buf);
        else
            unlink(buf);
    }
    closedir(d);
    rmdir(path);
}

sp_status sp_outdir_open(sp_outdir *od, const char *path, sp_error *err)
{
    memset(od, 0, sizeof *od);
    char *dir = dir_of(path);
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = (dir ? strlen(dir) : 0) + strlen(base) + 64;
    od->path = strdup(path);
    od->tmp_path = malloc(n);
    if (!dir || !od->path || !od->tmp_path) {
        free(dir);
        sp_outdir_abort(od);
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    }
    snprintf(od->tmp_path, n, "%s/.%s.sparsify-tmp-%ld", dir, base, (long)getpid());
    free(dir);
    rm_tree(od->tmp_path);
    if (mkdir(od->tmp_path, 0755) != 0) {
        sp_status st = sp_error_set(err, SP_ERR_IO, "cannot create folder for '%s': %s", path,
                                    strerror(errno));
        free(od->tmp_path);
        od->tmp_path = NULL;
        sp_outdir_abort(od);
        return st;
    }
    return SP_OK;
}

const char *sp_outdir_file(const sp_outdir *od, const char *name, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s", od->tmp_path, name);
    return buf;
}

sp_status sp_outdir_commit(sp_outdir *od, sp_error *err)
{
    struct stat st;
    sp_status s = SP_OK;
    char *old = NULL;
    if (stat(od->path, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) {
            s = sp_error_set(err, SP_ERR_IO, "cannot write folder '%s': a file is in the way",
                             od->path);
            goto out;
        }
        size_t n = strlen(od->path) + 64;
        old = malloc(n);
        if (!old) {
            s = sp_error_set(err, SP_ERR_NOMEM, "out of memory");
            goto out;
        }
        snprintf(old, n, "%s.sparsify-old-%ld", od->path, (long)getpid());
        if (rename(od->path, old) != 0) {
            s = sp_error_set(err, SP_ERR_IO, "cannot replace '%s': %s", od->path,
                             strerror(errno));
            goto out;
        }
    }
    if (rename(od->tmp_path, od->path) != 0) {
        s = sp_error_set(err, SP_ERR_IO, "cannot rename onto '%s': %s", od->path,
                         strerror(errno));
        if (old)
            rename(old, od->path);
        goto out;
    }
    if (old)
        rm_tree(old);
    free(od->tmp_path);
    od->tmp_path = NULL;
out:
    free(old);
    if (s)
        sp_outdir_abort(od);
    else {
        free(od->path);
        od->path = NULL;
    }
    return s;
}

void sp_outdir_abort(sp_outdir *od)
{
    if (od->tmp_path)
        rm_tree(od->tmp_path);
    free(od->tmp_path);
    free(od->path);
    od->tmp_path = od->path = NULL;
}

static uint32_t crc32_serial(uint32_t crc, const unsigned char *p, uint64_t len)
{
    while (len > 0) {
        uInt n = len > (1u << 30) ? (1u << 30) : (uInt)len;
        crc = (uint32_t)crc32(crc, p, n);
        p += n;
        len -= n;
    }
    return crc;
}

uint32_t sp_crc32(uint32_t crc, const void *buf, uint64_t len)
{
    const unsigned char *p = buf;
    /* big buffers: two halves on two threads, joined with crc32_combine */
    if (len < ((uint64_t)4 << 20))
        return crc32_serial(crc, p, len);
    uint64_t h = len / 2;
    uint32_t c1 = crc, c2 = 0;
#pragma omp parallel sections num_threads(2)
    {
#pragma omp section
        c1 = crc32_serial(crc, p, h);
#pragma omp section
        c2 = crc32_serial(0, p + h, len - h);
    }
    return (uint32_t)crc32_combine64(c1, c2, (z_off64_t)(len - h));
}
