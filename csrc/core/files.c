/* Downloads: signed CDN URLs to memory, to a file descriptor, or to a
 * directory with an atomic publish (temporary file, fsync, rename). Built on
 * the transfer loop in http.c; never sends credentials. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "platform.h"
#include "session.h"
#include "uni1_internal.h"

/* ---- downloads ---------------------------------------------------------- */

static uni1_status to_buffer(uni1_session *s, const char *url, uni1_buffer *out, long long expect,
                             char *content_type, size_t ct_len)
{
    memset(out, 0, sizeof *out);
    uni1_sink sink = {.buf = out, .fd = -1, .cap = (size_t)UNI1_DOWNLOAD_CAP + 1};
    sink.expect = expect;
    uni1_status st = uni1__download(s, url, &sink, content_type, ct_len);
    if (st != UNI1_OK)
        uni1_buffer_clear(out);
    return st;
}

uni1_status uni1_download_to_buffer(uni1_session *s, const char *url, uni1_buffer *out,
                                    char *content_type, size_t ct_len)
{
    return to_buffer(s, url, out, 0, content_type, ct_len);
}

/* The bytes must look like the image type the record (or the job's
 * outputFormat, which the caller put there) announces. */
static uni1_status check_head(uni1_session *s, const char *asset_id, const char *mime,
                              const unsigned char *b, size_t n)
{
    if (n == 0)
        return uni1__fail(s, UNI1_ERR_PROTOCOL, "asset %s: empty download", asset_id);
    if (mime[0] && !uni1__signature_matches(mime, b, n))
        return uni1__fail(s, UNI1_ERR_PROTOCOL, "asset %s: the data is not a valid %s", asset_id,
                          mime);
    return UNI1_OK;
}

static uni1_status check_buffer(uni1_session *s, const uni1_asset *asset, uni1_buffer *out,
                                uni1_status st)
{
    if (st == UNI1_OK)
        st = check_head(s, asset->id, asset->mime_type, out->data, out->len);
    if (st != UNI1_OK)
        uni1_buffer_clear(out);
    return st;
}

uni1_status uni1_download_asset_to_buffer(uni1_session *s, uni1_asset *asset, uni1_buffer *out,
                                          char *content_type, size_t ct_len)
{
    if (!asset->url)
        return uni1__fail(s, UNI1_ERR_PROTOCOL, "asset %s has no URL (status %s)", asset->id,
                          asset->status[0] ? asset->status : "unknown");
    uni1_status st = to_buffer(s, asset->url, out, asset->size, content_type, ct_len);
    if (st != UNI1_ERR_HTTP || s->err.http_status != 403)
        return check_buffer(s, asset, out, st);
    /* An expired signed URL answers 403: fetch the asset for a new one. */
    uni1__log(s, UNI1_LOG_INFO, "asset %s: URL refused (expired?), fetching a new one", asset->id);
    uni1_asset fresh;
    char id[UNI1_ID_MAX], mime[sizeof asset->mime_type];
    snprintf(id, sizeof id, "%s", asset->id);
    snprintf(mime, sizeof mime, "%s", asset->mime_type);
    st = uni1_get_asset(s, id, &fresh);
    if (st != UNI1_OK)
        return st;
    uni1_asset_clear(asset);
    *asset = fresh;
    if (!uni1__image_mime_known(asset->mime_type))
        snprintf(asset->mime_type, sizeof asset->mime_type, "%s", mime);
    if (!asset->url)
        return uni1__fail(s, UNI1_ERR_PROTOCOL, "asset %s has no URL (status %s)", asset->id,
                          asset->status[0] ? asset->status : "unknown");
    return check_buffer(s, asset, out,
                        to_buffer(s, asset->url, out, asset->size, content_type, ct_len));
}

uni1_status uni1_download_to_fd(uni1_session *s, const char *url, int fd, long long *written)
{
    uni1_sink sink = {.buf = NULL, .fd = fd, .cap = 0};
    uni1_status st = uni1__download(s, url, &sink, NULL, 0);
    if (written)
        *written = sink.written;
    return st;
}

static int valid_file_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 200 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || name[0] == '.')
        return 0;
    for (const char *p = name; *p; p++)
        if (*p == '/' || *p == '\\' || (unsigned char)*p < 0x20 || *p == 0x7f)
            return 0;
    return 1;
}

/* Creates ".NAME.XXXXXX.part" in dir (0600, like mkstemp); tmp gets its
 * name. -1 with errno on failure. */
static int make_temp(const uni1_dir *dir, const char *name, char *tmp, size_t tmp_len)
{
    static const char alnum[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    for (int tries = 0; tries < 100; tries++) {
        unsigned char r[6];
        uni1__random_bytes(r, sizeof r, (unsigned)tries);
        char suffix[7];
        for (size_t i = 0; i < 6; i++)
            suffix[i] = alnum[r[i] % (sizeof alnum - 1)];
        suffix[6] = 0;
        if (snprintf(tmp, tmp_len, ".%s.%s.part", name, suffix) >= (int)tmp_len) {
            errno = ENAMETOOLONG;
            return -1;
        }
        int fd = uni1__dir_create(dir, tmp);
        if (fd >= 0 || errno != EEXIST)
            return fd;
    }
    errno = EEXIST;
    return -1;
}

/* Completes a download into tmp (open as fd, in dir): checks the data
 * against the MIME type, fsyncs, closes and renames it to name; on any
 * failure (or when st already says one) removes tmp. final is the path
 * shown in messages and returned. Returns the resulting status. */
static uni1_status finish_file(uni1_session *s, uni1_status st, int fd, const uni1_dir *dir,
                               const char *tmp, const char *name, const char *final,
                               const char *asset_id, const char *mime, int overwrite,
                               char *path_out, size_t path_len)
{
    if (st == UNI1_OK) {
        unsigned char head[16];
        ssize_t n = uni1__pread(fd, head, sizeof head, 0);
        st = check_head(s, asset_id, mime, head, n > 0 ? (size_t)n : 0);
    }
    /* The temporary file is 0600; a saved image gets the mode any new file
     * would get (0666 less the umask), like curl -o or open(). */
    if (st == UNI1_OK && uni1__file_set_public(fd) != 0)
        st = uni1__fail_os(s, errno, "chmod %s", final);
    if (st == UNI1_OK && uni1__file_sync(fd) != 0)
        st = uni1__fail_os(s, errno, "fsync %s", final);
    if (close(fd) != 0 && st == UNI1_OK)
        st = uni1__fail_os(s, errno, "close %s", final);
    if (st == UNI1_OK && uni1__dir_publish(dir, tmp, name, overwrite) != 0) {
        if (errno == EEXIST)
            st = uni1__fail(s, UNI1_ERR_EXISTS, "%s exists (pass overwrite=True to replace it)",
                            final);
        else
            st = uni1__fail_os(s, errno, "cannot rename into %s", final);
    }
    if (st != UNI1_OK) {
        uni1__dir_unlink(dir, tmp);
        return st;
    }
    uni1__dir_sync(dir);
    if (path_out && path_len)
        snprintf(path_out, path_len, "%s", final);
    uni1__log(s, UNI1_LOG_INFO, "saved %s", final);
    return UNI1_OK;
}

static uni1_status open_dir(uni1_session *s, const char *dir, uni1_dir *d)
{
    if (uni1__dir_open(d, dir) != 0)
        return uni1__fail_os(s, errno, "cannot open the directory %s", dir);
    return UNI1_OK;
}

static uni1_status exists_error(uni1_session *s, const uni1_dir *dir, const char *name,
                                const char *final)
{
    if (uni1__dir_has(dir, name))
        return uni1__fail(s, UNI1_ERR_EXISTS, "%s exists (pass overwrite=True to replace it)",
                          final);
    return UNI1_OK;
}

/* One asset into d, with retries, Range resume and a fresh URL after a
 * 403 (uni1_download_asset_to_dir with the directory already open). */
static uni1_status asset_to_dirfd(uni1_session *s, const uni1_asset *asset, const uni1_dir *d,
                                  const char *dir, const char *name, int overwrite, char *path_out,
                                  size_t path_len)
{
    char final[PATH_MAX], tmp[NAME_MAX + 1];
    if (snprintf(final, sizeof final, "%s/%s", dir, name) >= (int)sizeof final)
        return uni1__fail(s, UNI1_ERR_INVALID, "destination path too long");
    uni1_status st = overwrite ? UNI1_OK : exists_error(s, d, name, final);
    if (st != UNI1_OK)
        return st;
    int fd = make_temp(d, name, tmp, sizeof tmp);
    if (fd < 0)
        return uni1__fail_os(s, errno, "cannot create a file in %s", dir);
    uni1_asset fresh;
    memset(&fresh, 0, sizeof fresh);
    const uni1_asset *cur = asset;
    for (int refreshed = 0;; refreshed++) {
        if (!cur->url) {
            st = uni1__fail(s, UNI1_ERR_PROTOCOL, "asset %s has no URL (status %s)", cur->id,
                            cur->status[0] ? cur->status : "unknown");
            break;
        }
        uni1_sink sink = {.buf = NULL, .fd = fd, .cap = 0};
        sink.expect = cur->size;
        st = uni1__download(s, cur->url, &sink, NULL, 0);
        /* An expired signed URL answers 403: fetch the asset for a new one. */
        if (st == UNI1_ERR_HTTP && s->err.http_status == 403 && !refreshed) {
            uni1__log(s, UNI1_LOG_INFO, "asset %s: URL refused (expired?), fetching a new one",
                      asset->id);
            uni1_asset_clear(&fresh);
            st = uni1_get_asset(s, asset->id, &fresh);
            if (st != UNI1_OK)
                break;
            cur = &fresh;
            if (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) < 0) {
                st = uni1__fail(s, UNI1_ERR_IO, "cannot rewind %s", final);
                break;
            }
            continue;
        }
        break;
    }
    const char *mime = uni1__image_mime_known(cur->mime_type) ? cur->mime_type : asset->mime_type;
    st =
        finish_file(s, st, fd, d, tmp, name, final, asset->id, mime, overwrite, path_out, path_len);
    uni1_asset_clear(&fresh);
    return st;
}

uni1_status uni1_download_asset_to_dir(uni1_session *s, const uni1_asset *asset, const char *dir,
                                       const char *name, int overwrite, char *path_out,
                                       size_t path_len)
{
    uni1__reset_error(s);
    if (!valid_file_name(name))
        return uni1__fail(s, UNI1_ERR_INVALID, "not a plain file name");
    uni1_dir d;
    uni1_status st = open_dir(s, dir, &d);
    if (st != UNI1_OK)
        return st;
    st = asset_to_dirfd(s, asset, &d, dir, name, overwrite, path_out, path_len);
    uni1__dir_close(&d);
    return st;
}

#define PARALLEL_DOWNLOADS 6

typedef struct pending_file {
    char final[PATH_MAX], tmp[NAME_MAX + 1];
    int fd;
    CURL *easy;
    uni1_sink sink;
    uni1_response_meta meta;
    int ok;
} pending_file;

uni1_status uni1_download_assets_to_dir(uni1_session *s, const uni1_asset *assets, size_t n,
                                        const char *dir, const char *const *names, int overwrite,
                                        char *const *paths_out, size_t path_len)
{
    uni1__reset_error(s);
    if (n == 1)
        return uni1_download_asset_to_dir(s, &assets[0], dir, names[0], overwrite,
                                          paths_out ? paths_out[0] : NULL, path_len);
    if (n == 0)
        return UNI1_OK;
    uni1_dir d = {.fd = -1};
    pending_file *pf = calloc(n, sizeof *pf);
    if (!pf)
        return uni1__fail(s, UNI1_ERR_NOMEM, "out of memory");
    uni1_status st = UNI1_OK;
    for (size_t i = 0; i < n; i++)
        pf[i].fd = -1;
    /* Every check that needs no network comes first: a name or an existing
     * file that would fail the call fails it before any byte is fetched. */
    for (size_t i = 0; i < n && st == UNI1_OK; i++) {
        if (!valid_file_name(names[i]))
            st = uni1__fail(s, UNI1_ERR_INVALID, "not a plain file name");
        else if (snprintf(pf[i].final, PATH_MAX, "%s/%s", dir, names[i]) >= PATH_MAX)
            st = uni1__fail(s, UNI1_ERR_INVALID, "destination path too long");
        for (size_t j = 0; j < i && st == UNI1_OK; j++)
            if (strcmp(names[i], names[j]) == 0)
                st = uni1__fail(s, UNI1_ERR_INVALID, "two assets would be saved as %s", names[i]);
    }
    if (st == UNI1_OK)
        st = open_dir(s, dir, &d);
    for (size_t i = 0; i < n && st == UNI1_OK && !overwrite; i++)
        st = exists_error(s, &d, names[i], pf[i].final);
    /* First pass: up to PARALLEL_DOWNLOADS transfers at once on the multi
     * handle, one attempt each. */
    for (size_t base = 0; base < n && st == UNI1_OK; base += PARALLEL_DOWNLOADS) {
        size_t m = n - base < PARALLEL_DOWNLOADS ? n - base : PARALLEL_DOWNLOADS;
        CURL *easies[PARALLEL_DOWNLOADS];
        CURLcode results[PARALLEL_DOWNLOADS];
        uni1_response_meta metas[PARALLEL_DOWNLOADS];
        size_t started = 0;
        for (size_t k = 0; k < m; k++) {
            pending_file *f = &pf[base + k];
            if (!assets[base + k].url)
                continue; /* the sequential pass reports it */
            f->fd = make_temp(&d, names[base + k], f->tmp, sizeof f->tmp);
            f->easy = f->fd >= 0 ? curl_easy_init() : NULL;
            if (!f->easy) {
                if (f->fd >= 0) {
                    close(f->fd);
                    uni1__dir_unlink(&d, f->tmp);
                    f->fd = -1;
                }
                continue;
            }
            f->sink = (uni1_sink){.buf = NULL, .fd = f->fd, .cap = 0};
            f->sink.expect = assets[base + k].size;
            uni1__setup_download(s, f->easy, &f->meta, &f->sink, assets[base + k].url);
            easies[started] = f->easy;
            started++;
        }
        st = uni1__run_parallel(s, easies, started, results, metas);
        size_t r = 0;
        for (size_t k = 0; k < m; k++) {
            pending_file *f = &pf[base + k];
            if (!f->easy)
                continue;
            /* Framed as complete is not enough: the size the record
             * declares must have arrived (else the second pass resumes). */
            int good = st == UNI1_OK && results[r] == CURLE_OK && metas[r].status == 200 &&
                       uni1__download_complete(&f->sink);
            r++;
            curl_easy_cleanup(f->easy);
            f->easy = NULL;
            const uni1_asset *a = &assets[base + k];
            if (good) {
                uni1_status fs = finish_file(s, UNI1_OK, f->fd, &d, f->tmp, names[base + k],
                                             f->final, a->id, a->mime_type, overwrite,
                                             paths_out ? paths_out[base + k] : NULL, path_len);
                f->ok = fs == UNI1_OK;
                if (fs == UNI1_ERR_EXISTS || fs == UNI1_ERR_IO)
                    st = fs; /* local trouble: trying again will not help */
                else if (fs != UNI1_OK)
                    uni1__reset_error(s); /* the second pass tries it again */
            } else {
                close(f->fd);
                uni1__dir_unlink(&d, f->tmp);
            }
            f->fd = -1;
        }
    }
    /* Second pass: whatever did not make it goes through the careful path
     * (retries with backoff, Range resume, a fresh URL after a 403). */
    for (size_t i = 0; i < n && st == UNI1_OK; i++) {
        if (pf[i].ok)
            continue;
        uni1__log(s, UNI1_LOG_DEBUG, "asset %s: retrying on its own", assets[i].id);
        st = asset_to_dirfd(s, &assets[i], &d, dir, names[i], overwrite,
                            paths_out ? paths_out[i] : NULL, path_len);
    }
    uni1__dir_close(&d);
    free(pf);
    return st;
}
