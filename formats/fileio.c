/*
 * File helpers for every format: read-only mappings whose pages can be
 * dropped again (so walking a large checkpoint keeps memory flat), atomic
 * output files and folders (never a partial output, never anything
 * replaced that was not there when the writer started, never a link
 * followed while removing; see "Outputs" in include/sparsify/ckpt.h), and
 * CRC-32.
 */
#include "formats/ckpt_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
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

/* ---- temporary outputs: names, ownership, removal ----
 *
 * Everything here that a signal handler may call (sp_output_tmp_remove and
 * what it uses) is async-signal-safe: system calls and stack buffers only. */

bool sp_output_tmp_path(const char *path, long pid, char *buf, size_t len)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    int dl = slash ? (int)(slash - path) + 1 : 0;
    int n = snprintf(buf, len, "%.*s.%s.sparsify-tmp-%ld", dl, path, base, pid);
    return n > 0 && (size_t)n < len && *base;
}

/* Split path into its folder (into dir, "." when none) and its last
 * component; false when it does not fit. No allocation. */
static bool split_path(const char *path, char *dir, size_t dlen, const char **base)
{
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : 0;
    if (slash && n == 0)
        n = 1; /* "/x" */
    if (!slash) {
        dir[0] = '.';
        dir[1] = '\0';
    } else {
        if (n >= dlen)
            return false;
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    *base = slash ? slash + 1 : path;
    return **base != '\0';
}

struct sp_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

/* Remove name (relative to the folder pfd) and, if it is a folder,
 * everything below it, never following a symbolic link: folders are
 * opened with O_NOFOLLOW and links are unlinked as themselves. */
static bool rm_tree_at(int pfd, const char *name, int depth)
{
    int fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return unlinkat(pfd, name, 0) == 0 || errno == ENOENT;
    if (depth > 64) {
        close(fd);
        return false;
    }
    char buf[2048] __attribute__((aligned(8)));
    /* deleting while reading may make getdents skip entries: read again
     * from the start until a pass removes nothing */
    for (int pass = 0; pass < 1024; pass++) {
        bool any = false, removed = false;
        long n;
        lseek(fd, 0, SEEK_SET);
        while ((n = syscall(SYS_getdents64, fd, buf, sizeof buf)) > 0) {
            for (long off = 0; off < n;) {
                const struct sp_dirent64 *d = (const void *)(buf + off);
                off += d->d_reclen;
                const char *e = d->d_name;
                if (e[0] == '.' && (e[1] == '\0' || (e[1] == '.' && e[2] == '\0')))
                    continue;
                any = true;
                if (d->d_type == DT_DIR || d->d_type == DT_UNKNOWN)
                    removed |= rm_tree_at(fd, e, depth + 1);
                else
                    removed |= unlinkat(fd, e, 0) == 0;
            }
        }
        if (!any || !removed)
            break;
    }
    close(fd);
    return unlinkat(pfd, name, AT_REMOVEDIR) == 0;
}

/* Is dfd a folder of ours (it holds the marker as a regular file)? */
static bool has_marker(int pfd, const char *name)
{
    int fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return false;
    struct stat st;
    bool ok = fstatat(fd, SP_TMP_MARKER, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
    close(fd);
    return ok;
}

/* One removal attempt of the temporary base in folder tmp_path's parent.
 * 1 removed, 0 nothing there, -1 not ours or not (yet) removable. own:
 * this process's temporary, where an empty unmarked folder is one created
 * a moment before being marked. */
static int remove_tmp_once(const char *tmp_path, bool own)
{
    char dir[PATH_MAX];
    const char *base;
    if (!split_path(tmp_path, dir, sizeof dir, &base))
        return -1;
    int pfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (pfd < 0)
        return -1;
    struct stat st;
    int r = -1;
    if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) != 0)
        r = 0;
    else if (S_ISDIR(st.st_mode) && has_marker(pfd, base))
        r = rm_tree_at(pfd, base, 0) ? 1 : -1;
    else if (S_ISDIR(st.st_mode) && own)
        r = unlinkat(pfd, base, AT_REMOVEDIR) == 0 ? 1 : -1;
    else if (S_ISREG(st.st_mode) || S_ISLNK(st.st_mode)) /* a link: itself */
        r = unlinkat(pfd, base, 0) == 0 ? 1 : -1;
    close(pfd);
    return r;
}

bool sp_output_tmp_remove(const char *tmp_path) { return remove_tmp_once(tmp_path, false) == 1; }

bool sp_output_tmp_remove_own(const char *tmp_path)
{
    /* other threads of this process may still be writing into it: go on
     * until it is gone (bounded) */
    for (int tries = 0; tries < 64; tries++) {
        struct stat st;
        if (remove_tmp_once(tmp_path, true) >= 0 && lstat(tmp_path, &st) != 0)
            return true;
    }
    return false;
}

/* ".BASE.sparsify-tmp-PID" (or "-PID-old"): the PID, else 0. */
static long tmp_pid_of(const char *entry, const char *base)
{
    size_t bl = strlen(base);
    static const char tag[] = ".sparsify-tmp-";
    if (entry[0] != '.' || strncmp(entry + 1, base, bl) || strncmp(entry + 1 + bl, tag, sizeof tag - 1))
        return 0;
    const char *p = entry + 1 + bl + sizeof tag - 1;
    char *end;
    errno = 0;
    long pid = strtol(p, &end, 10);
    if (errno || end == p || pid <= 0 || (*end && strcmp(end, "-old")))
        return 0;
    return pid;
}

size_t sp_output_clean_stale(const char *path)
{
    char dir[PATH_MAX], full[PATH_MAX];
    const char *base;
    if (!split_path(path, dir, sizeof dir, &base))
        return 0;
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    size_t removed = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        long pid = tmp_pid_of(e->d_name, base);
        /* a live process (ours included) may be writing it; a dead one
         * left it behind. PIDs are never reused while a process lives. */
        if (!pid || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || st.st_uid != geteuid())
            continue;
        if ((size_t)snprintf(full, sizeof full, "%s/%s", dir, e->d_name) < sizeof full &&
            sp_output_tmp_remove(full))
            removed++;
    }
    closedir(d);
    return removed;
}

/* What is at path when a writer starts: only that may be replaced. */
static void snapshot(const char *path, sp_outid *id)
{
    struct stat st;
    memset(id, 0, sizeof *id);
    id->existed = lstat(path, &st) == 0;
    if (id->existed) {
        id->dev = st.st_dev;
        id->ino = st.st_ino;
        id->ctime = st.st_ctim; /* an inode number can be reused at once */
    }
}

static bool same_id(const sp_outid *id, const struct stat *st)
{
    return st->st_dev == id->dev && st->st_ino == id->ino && st->st_ctim.tv_sec == id->ctime.tv_sec &&
           st->st_ctim.tv_nsec == id->ctime.tv_nsec;
}

/* The few steps that must not be cut by the signals a caller's handler
 * cleans up after (a folder created but not yet marked, an old output
 * exchanged out but not yet marked) run with SIGINT, SIGTERM and SIGHUP
 * held back in this thread; they arrive as soon as the step is done. */
static void hold_signals(sigset_t *saved)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, saved);
}

static void release_signals(const sigset_t *saved) { pthread_sigmask(SIG_SETMASK, saved, NULL); }

/* Mark what used to be the output, now at tmp after the exchange, as ours
 * (a folder gets the marker), so that whoever removes it (this run, its
 * signal handler, or the next run after a kill) recognises it. */
static void mark_replaced(const char *tmp)
{
    int fd = open(tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return; /* a file: removable as it is */
    int m = openat(fd, SP_TMP_MARKER, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (m >= 0)
        close(m);
    close(fd);
}

/* Put the finished temporary tmp at path. Nothing at path when the writer
 * started: rename without replacing (an output that appeared meanwhile is
 * left alone). Something: replace that same thing atomically (rename for a
 * file over a file or link, else exchange), then remove it. Symbolic links
 * at path are replaced, never followed. */
static sp_status place(const char *tmp, const char *path, bool is_dir, const sp_outid *id,
                       char *old, sp_error *err)
{
    old[0] = '\0';
    struct stat st;
    bool existed = id->existed;
    bool now = lstat(path, &st) == 0;
    if (existed && now && !same_id(id, &st))
        return sp_error_set(err, SP_ERR_IO, "'%s' was replaced while being written; not overwritten", path);
    if (!now) {
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0)
            return SP_OK;
        int e = errno;
        if (e == EINVAL || e == ENOSYS) {
            /* a file system without RENAME_NOREPLACE: link() never
             * replaces a file; rename() replaces at most an empty folder
             * (or, where there are no hard links, what just appeared) */
            if (!is_dir && link(tmp, path) == 0) {
                unlink(tmp);
                return SP_OK;
            }
            e = is_dir ? 0 : errno;
            if (e != EEXIST) {
                if (rename(tmp, path) == 0)
                    return SP_OK;
                e = errno;
            }
        }
        if (e == EEXIST || e == ENOTEMPTY)
            return sp_error_set(err, SP_ERR_IO, "'%s' appeared while being written; not overwritten",
                                path);
        return sp_error_set(err, SP_ERR_IO, "cannot rename onto '%s': %s", path, strerror(e));
    }
    if (!existed)
        return sp_error_set(err, SP_ERR_IO, "'%s' appeared while being written; not overwritten", path);
    if (!is_dir && !S_ISDIR(st.st_mode)) {
        if (rename(tmp, path) != 0) /* atomic; a link is replaced, not followed */
            return sp_error_set(err, SP_ERR_IO, "cannot rename onto '%s': %s", path, strerror(errno));
        return SP_OK;
    }
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_EXCHANGE) != 0) {
        if (errno != EINVAL && errno != ENOSYS)
            return sp_error_set(err, SP_ERR_IO, "cannot replace '%s': %s", path, strerror(errno));
        /* no exchange here: move the old one aside, then rename */
        char aside[PATH_MAX];
        if ((size_t)snprintf(aside, sizeof aside, "%s-old", tmp) >= sizeof aside || strlen(tmp) >= PATH_MAX)
            return sp_error_set(err, SP_ERR_IO, "cannot replace '%s': path too long", path);
        if (rename(path, aside) != 0)
            return sp_error_set(err, SP_ERR_IO, "cannot replace '%s': %s", path, strerror(errno));
        if (rename(tmp, path) != 0) {
            sp_status s = sp_error_set(err, SP_ERR_IO, "cannot rename onto '%s': %s", path, strerror(errno));
            rename(aside, path);
            return s;
        }
        mark_replaced(aside);
        strcpy(old, aside);
        return SP_OK;
    }
    mark_replaced(tmp); /* the old output, now under the temporary name */
    strcpy(old, tmp);
    return SP_OK;
}

/* place(), held against signals, then the old output removed. */
static sp_status place_and_clear(const char *tmp, const char *path, bool is_dir,
                                 const sp_outid *id, sp_error *err)
{
    char old[PATH_MAX];
    sigset_t saved;
    hold_signals(&saved);
    sp_status s = place(tmp, path, is_dir, id, old, err);
    if (!s && is_dir) {
        /* the output is in place: it is not a temporary any more */
        char marker[PATH_MAX];
        if ((size_t)snprintf(marker, sizeof marker, "%s/%s", path, SP_TMP_MARKER) < sizeof marker)
            unlink(marker);
    }
    release_signals(&saved);
    if (!s && old[0])
        sp_output_tmp_remove(old); /* links inside are removed, never followed */
    return s;
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
    sp_output_clean_stale(path);
    snapshot(path, &of->id);
#ifdef O_TMPFILE
    /* Unnamed: nothing is left behind if we are killed before commit. */
    of->fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
#endif
    if (of->fd < 0) {
        size_t n = strlen(path) + 64;
        of->tmp_path = malloc(n);
        if (!of->tmp_path || !sp_output_tmp_path(path, (long)getpid(), of->tmp_path, n)) {
            free(dir);
            free(of->tmp_path);
            free(of->path);
            memset(of, 0, sizeof *of);
            of->fd = -1;
            return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        }
        unlink(of->tmp_path); /* a leftover of this process: a file, ours */
        of->fd = open(of->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
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

/* A write whose source is a mapping of a file that has since shrunk fails
 * with EFAULT (the kernel copies from the vanished pages) where a read by
 * the CPU would raise SIGBUS. Read the source here so that both paths fail
 * alike: the CLI's SIGBUS handler names the file and exits 2. Returns only
 * when the source is readable after all. */
static void touch_source(const void *buf, size_t len)
{
    const volatile unsigned char *p = buf;
    for (size_t i = 0; i < len; i += 4096)
        (void)p[i];
    if (len)
        (void)p[len - 1];
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
            if (errno == EFAULT)
                touch_source(p, chunk);
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
            if (errno == EFAULT)
                touch_source(p, len);
            return sp_error_set(err, SP_ERR_IO, "cannot write '%s': %s", of->path,
                                strerror(errno));
        }
        p += w;
        off += (uint64_t)w;
        len -= (size_t)w;
    }
    return SP_OK;
}

sp_status sp_outfile_copy(sp_outfile *of, const sp_mapfile *src, uint64_t src_off,
                          uint64_t out_off, uint64_t len, sp_error *err)
{
    if (len == 0)
        return SP_OK;
    if (src_off > src->size || len > src->size - src_off)
        return sp_error_set(err, SP_ERR_IO, "'%s': copy past the end of the input", of->path);
    bool kcopy = src->fd >= 0 && !src->borrowed &&
                 !__atomic_load_n(&of->no_kcopy, __ATOMIC_RELAXED);
    while (kcopy && len > 0) {
        loff_t in = (loff_t)src_off, out = (loff_t)out_off;
        size_t chunk = len > ((uint64_t)1 << 30) ? (size_t)1 << 30 : (size_t)len;
        ssize_t n = copy_file_range(src->fd, &in, of->fd, &out, chunk, 0);
        if (n > 0) {
            src_off += (uint64_t)n;
            out_off += (uint64_t)n;
            len -= (uint64_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0) {
            if (src->data) /* the input shrank: its map faults like a read */
                touch_source(src->data + src_off, (size_t)len);
            return sp_error_set(err, SP_ERR_FORMAT,
                                "the input of '%s' ended early: changed or truncated while being read",
                                of->path);
        }
        if (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP ||
            errno == EPERM || errno == ETXTBSY || errno == EBADF) {
            __atomic_store_n(&of->no_kcopy, 1, __ATOMIC_RELAXED);
            break;
        }
        return sp_error_set(err, SP_ERR_IO, "cannot write '%s': %s", of->path, strerror(errno));
    }
    const uint64_t step = (uint64_t)16 << 20;
    while (len > 0) {
        uint64_t n = len > step ? step : len;
        sp_status s = sp_outfile_pwrite(of, src->data + src_off, (size_t)n, out_off, err);
        if (s)
            return s;
        sp_mapfile_drop(src, src_off, n);
        src_off += n;
        out_off += n;
        len -= n;
    }
    return SP_OK;
}

sp_status sp_outfile_commit(sp_outfile *of, sp_error *err)
{
    sp_status st = SP_OK;
    if (of->fd < 0)
        return sp_error_set(err, SP_ERR_IO, "'%s': output already closed", of->path);
    if (!of->tmp_path) {
        /* Give the unnamed file its hidden name, then put it in place. */
        size_t n = strlen(of->path) + 64;
        char *tmp = malloc(n);
        char proc[64];
        if (!tmp || !sp_output_tmp_path(of->path, (long)getpid(), tmp, n)) {
            free(tmp);
            return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
        }
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
    if (!st)
        st = place_and_clear(of->tmp_path, of->path, false, &of->id, err);
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

sp_status sp_outdir_open(sp_outdir *od, const char *path, sp_error *err)
{
    memset(od, 0, sizeof *od);
    size_t n = strlen(path) + 64;
    od->path = strdup(path);
    od->tmp_path = malloc(n);
    if (!od->path || !od->tmp_path || !sp_output_tmp_path(path, (long)getpid(), od->tmp_path, n)) {
        sp_outdir_abort(od);
        return sp_error_set(err, SP_ERR_NOMEM, "out of memory");
    }
    sp_output_clean_stale(path);
    snapshot(path, &od->id);
    sp_output_tmp_remove(od->tmp_path); /* a leftover of this process */
    /* created and marked as one step: only folders holding the marker are
     * ever removed as ours */
    static const char note[] = "temporary output of sparsify; removed when its run ends\n";
    sigset_t saved;
    hold_signals(&saved);
    int fd = -1;
    if (mkdir(od->tmp_path, 0755) != 0 ||
        (fd = open(od->tmp_path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
        sp_status st = sp_error_set(err, SP_ERR_IO, "cannot create folder for '%s': %s", path,
                                    strerror(errno));
        release_signals(&saved);
        free(od->tmp_path); /* not ours to remove */
        od->tmp_path = NULL;
        sp_outdir_abort(od);
        return st;
    }
    int m = openat(fd, SP_TMP_MARKER, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    bool ok = m >= 0 && write(m, note, sizeof note - 1) == (ssize_t)(sizeof note - 1);
    if (m >= 0)
        close(m);
    close(fd);
    if (!ok)
        rmdir(od->tmp_path);
    release_signals(&saved);
    if (!ok) {
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
    sp_status s = place_and_clear(od->tmp_path, od->path, true, &od->id, err);
    if (s) {
        sp_outdir_abort(od);
        return s;
    }
    free(od->tmp_path);
    free(od->path);
    od->tmp_path = od->path = NULL;
    return SP_OK;
}

void sp_outdir_abort(sp_outdir *od)
{
    if (od->tmp_path)
        sp_output_tmp_remove(od->tmp_path);
    free(od->tmp_path);
    free(od->path);
    od->tmp_path = od->path = NULL;
}

sp_status sp_file_write_atomic(const char *path, const void *data, size_t len, sp_error *err)
{
    sp_outfile of;
    sp_status s = sp_outfile_open(&of, path, err);
    if (!s && !(s = sp_outfile_write(&of, data, len, err)))
        s = sp_outfile_commit(&of, err);
    if (s)
        sp_outfile_abort(&of);
    return s;
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
