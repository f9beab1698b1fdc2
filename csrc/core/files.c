/* Downloads: signed CDN URLs to memory, to a file descriptor, or to a
 * directory with an atomic publish (temporary file, fsync, rename). Built on
 * the transfer loop in http.c; never sends credentials. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "session.h"

/* ---- downloads ---------------------------------------------------------- */

uni1_status uni1_download_to_buffer(uni1_session *s, const char *url, uni1_buffer *out,
                                    char *content_type, size_t ct_len)
{
    memset(out, 0, sizeof *out);
    uni1_sink sink = {out, -1, (size_t)1 << 31, 0, 0, 0};
    uni1_status st = uni1__download(s, url, &sink, content_type, ct_len);
    if (st != UNI1_OK)
        uni1_buffer_clear(out);
    return st;
}

static int signature_matches(const char *mime, const unsigned char *b, size_t n);

static uni1_status check_buffer(uni1_session *s, const uni1_asset *asset, uni1_buffer *out,
                                uni1_status st)
{
    if (st != UNI1_OK)
        return st;
    if (out->len == 0)
        st = uni1__fail(s, UNI1_ERR_PROTOCOL, "asset %s: empty download", asset->id);
    else if (asset->mime_type[0] && !signature_matches(asset->mime_type, out->data, out->len))
        st = uni1__fail(s, UNI1_ERR_PROTOCOL, "asset %s: the data is not a valid %s", asset->id,
                        asset->mime_type);
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
    uni1_status st = uni1_download_to_buffer(s, asset->url, out, content_type, ct_len);
    if (st != UNI1_ERR_HTTP || s->err.http_status != 403)
        return check_buffer(s, asset, out, st);
    /* An expired signed URL answers 403: fetch the asset for a new one. */
    uni1__log(s, UNI1_LOG_INFO, "asset %s: URL refused (expired?), fetching a new one", asset->id);
    uni1_asset fresh;
    char id[UNI1_ID_MAX];
    snprintf(id, sizeof id, "%s", asset->id);
    st = uni1_get_asset(s, id, &fresh);
    if (st != UNI1_OK)
        return st;
    uni1_asset_clear(asset);
    *asset = fresh;
    if (!asset->url)
        return uni1__fail(s, UNI1_ERR_PROTOCOL, "asset %s has no URL (status %s)", asset->id,
                          asset->status[0] ? asset->status : "unknown");
    return check_buffer(s, asset, out,
                        uni1_download_to_buffer(s, asset->url, out, content_type, ct_len));
}

uni1_status uni1_download_to_fd(uni1_session *s, const char *url, int fd, long long *written)
{
    uni1_sink sink = {NULL, fd, 0, 0, 0, 0};
    uni1_status st = uni1__download(s, url, &sink, NULL, 0);
    if (written)
        *written = sink.written;
    return st;
}

/* Whether the first bytes agree with the announced image type. Unknown types
 * pass: only a clear contradiction is an error. */
static int signature_matches(const char *mime, const unsigned char *b, size_t n)
{
    if (strcmp(mime, "image/png") == 0)
        return n >= 8 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0;
    if (strcmp(mime, "image/jpeg") == 0 || strcmp(mime, "image/jpg") == 0)
        return n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff;
    if (strcmp(mime, "image/webp") == 0)
        return n >= 12 && memcmp(b, "RIFF", 4) == 0 && memcmp(b + 8, "WEBP", 4) == 0;
    if (strcmp(mime, "image/gif") == 0)
        return n >= 6 && memcmp(b, "GIF8", 4) == 0;
    return 1;
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

static int fsync_dir(const char *dir)
{
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -1;
    int rc = fsync(dfd);
    close(dfd);
    return rc;
}

static int publish(const char *tmp, const char *final, int overwrite)
{
    if (overwrite)
        return rename(tmp, final);
#ifdef RENAME_NOREPLACE
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, final, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return -1;
#endif
    /* Filesystems without RENAME_NOREPLACE: link() fails if final exists. */
    if (link(tmp, final) != 0)
        return -1;
    unlink(tmp);
    return 0;
}

/* The process umask, read without changing it (umask(2) can only be read by
 * setting it, which races with other threads creating files). */
static mode_t process_umask(void)
{
    mode_t mask = 022;
    FILE *f = fopen("/proc/self/status", "re");
    if (!f)
        return mask;
    char line[128];
    while (fgets(line, sizeof line, f)) {
        unsigned int m;
        if (sscanf(line, "Umask: %o", &m) == 1) {
            mask = (mode_t)m;
            break;
        }
    }
    fclose(f);
    return mask;
}

/* Completes a download into tmp (open as fd): checks the data against the
 * MIME type, fsyncs, closes and renames it to final; on any failure (or when
 * st already says one) removes tmp. Returns the resulting status. */
static uni1_status finish_file(uni1_session *s, uni1_status st, int fd, const char *tmp,
                               const char *final, const char *dir, const char *asset_id,
                               const char *mime, int overwrite, char *path_out, size_t path_len)
{
    if (st == UNI1_OK) {
        unsigned char head[16];
        ssize_t n = pread(fd, head, sizeof head, 0);
        if (n <= 0)
            st = uni1__fail(s, UNI1_ERR_PROTOCOL, "asset %s: empty download", asset_id);
        else if (mime[0] && !signature_matches(mime, head, (size_t)n))
            st = uni1__fail(s, UNI1_ERR_PROTOCOL, "asset %s: the data is not a valid %s", asset_id,
                            mime);
    }
    /* mkostemps makes the file 0600; a saved image gets the mode any new
     * file would get (0666 less the umask), like curl -o or open(). */
    if (st == UNI1_OK && fchmod(fd, 0666 & ~process_umask()) != 0)
        st = uni1__fail(s, UNI1_ERR_IO, "chmod %s: %s", tmp, strerror(errno));
    if (st == UNI1_OK && fsync(fd) != 0)
        st = uni1__fail(s, UNI1_ERR_IO, "fsync %s: %s", tmp, strerror(errno));
    if (close(fd) != 0 && st == UNI1_OK)
        st = uni1__fail(s, UNI1_ERR_IO, "close %s: %s", tmp, strerror(errno));
    if (st == UNI1_OK && publish(tmp, final, overwrite) != 0) {
        if (errno == EEXIST)
            st = uni1__fail(s, UNI1_ERR_EXISTS, "%s exists (pass overwrite=True to replace it)",
                            final);
        else
            st = uni1__fail(s, UNI1_ERR_IO, "cannot rename into %s: %s", final, strerror(errno));
    }
    if (st != UNI1_OK) {
        unlink(tmp);
        return st;
    }
    fsync_dir(dir);
    if (path_out && path_len)
        snprintf(path_out, path_len, "%s", final);
    uni1__log(s, UNI1_LOG_INFO, "saved %s", final);
    return UNI1_OK;
}

uni1_status uni1_download_asset_to_dir(uni1_session *s, const uni1_asset *asset, const char *dir,
                                       const char *name, int overwrite, char *path_out,
                                       size_t path_len)
{
    uni1__reset_error(s);
    if (!valid_file_name(name))
        return uni1__fail(s, UNI1_ERR_INVALID, "not a plain file name");
    char final[PATH_MAX], tmp[PATH_MAX];
    if (snprintf(final, sizeof final, "%s/%s", dir, name) >= (int)sizeof final ||
        snprintf(tmp, sizeof tmp, "%s/.%s.XXXXXX.part", dir, name) >= (int)sizeof tmp)
        return uni1__fail(s, UNI1_ERR_INVALID, "destination path too long");
    if (!overwrite && access(final, F_OK) == 0)
        return uni1__fail(s, UNI1_ERR_EXISTS, "%s exists (pass overwrite=True to replace it)",
                          final);
    int fd = mkostemps(tmp, 5, O_CLOEXEC);
    if (fd < 0)
        return uni1__fail(s, UNI1_ERR_IO, "cannot create a file in %s: %s", dir, strerror(errno));
    uni1_asset fresh;
    memset(&fresh, 0, sizeof fresh);
    const uni1_asset *cur = asset;
    uni1_status st = UNI1_OK;
    for (int refreshed = 0;; refreshed++) {
        if (!cur->url) {
            st = uni1__fail(s, UNI1_ERR_PROTOCOL, "asset %s has no URL (status %s)", cur->id,
                            cur->status[0] ? cur->status : "unknown");
            break;
        }
        long long written = 0;
        st = uni1_download_to_fd(s, cur->url, fd, &written);
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
                st = uni1__fail(s, UNI1_ERR_IO, "cannot rewind %s", tmp);
                break;
            }
            continue;
        }
        if (st == UNI1_OK && cur->size >= 0 && written != cur->size && cur->size > 0) {
            /* Content-Length is checked by libcurl; this catches an asset
             * record that disagrees with what the CDN sent. */
            uni1__log(s, UNI1_LOG_DEBUG, "asset %s: %lld bytes, record says %lld", asset->id,
                      written, cur->size);
        }
        break;
    }
    const char *mime = cur->mime_type[0] ? cur->mime_type : asset->mime_type;
    st = finish_file(s, st, fd, tmp, final, dir, asset->id, mime, overwrite, path_out, path_len);
    uni1_asset_clear(&fresh);
    return st;
}

#define PARALLEL_DOWNLOADS 6

typedef struct pending_file {
    char final[PATH_MAX], tmp[PATH_MAX];
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
    pending_file *pf = calloc(n, sizeof *pf);
    if (!pf)
        return uni1__fail(s, UNI1_ERR_NOMEM, "out of memory");
    uni1_status st = UNI1_OK;
    /* Every check that needs no network comes first: a name or an existing
     * file that would fail the call fails it before any byte is fetched. */
    for (size_t i = 0; i < n && st == UNI1_OK; i++) {
        pf[i].fd = -1;
        if (!valid_file_name(names[i]))
            st = uni1__fail(s, UNI1_ERR_INVALID, "not a plain file name");
        else if (snprintf(pf[i].final, PATH_MAX, "%s/%s", dir, names[i]) >= PATH_MAX ||
                 snprintf(pf[i].tmp, PATH_MAX, "%s/.%s.XXXXXX.part", dir, names[i]) >= PATH_MAX)
            st = uni1__fail(s, UNI1_ERR_INVALID, "destination path too long");
        else if (!overwrite && access(pf[i].final, F_OK) == 0)
            st = uni1__fail(s, UNI1_ERR_EXISTS, "%s exists (pass overwrite=True to replace it)",
                            pf[i].final);
        for (size_t j = 0; j < i && st == UNI1_OK; j++)
            if (strcmp(names[i], names[j]) == 0)
                st = uni1__fail(s, UNI1_ERR_INVALID, "two assets would be saved as %s", names[i]);
    }
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
            f->fd = mkostemps(f->tmp, 5, O_CLOEXEC);
            f->easy = f->fd >= 0 ? curl_easy_init() : NULL;
            if (!f->easy) {
                if (f->fd >= 0) {
                    close(f->fd);
                    unlink(f->tmp);
                    f->fd = -1;
                }
                snprintf(f->tmp, PATH_MAX, "%s/.%s.XXXXXX.part", dir, names[base + k]);
                continue;
            }
            f->sink = (uni1_sink){NULL, f->fd, 0, 0, 0, 0};
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
            int good = st == UNI1_OK && results[r] == CURLE_OK && metas[r].status == 200;
            r++;
            curl_easy_cleanup(f->easy);
            f->easy = NULL;
            const uni1_asset *a = &assets[base + k];
            if (good) {
                uni1_status fs =
                    finish_file(s, UNI1_OK, f->fd, f->tmp, f->final, dir, a->id, a->mime_type,
                                overwrite, paths_out ? paths_out[base + k] : NULL, path_len);
                f->ok = fs == UNI1_OK;
                if (fs == UNI1_ERR_EXISTS || fs == UNI1_ERR_IO)
                    st = fs; /* local trouble: trying again will not help */
                else if (fs != UNI1_OK)
                    uni1__reset_error(s); /* the second pass tries it again */
            } else {
                close(f->fd);
                unlink(f->tmp);
            }
            f->fd = -1;
            /* mkostemps rewrote the template: restore it for the next pass. */
            snprintf(f->tmp, PATH_MAX, "%s/.%s.XXXXXX.part", dir, names[base + k]);
        }
    }
    /* Second pass: whatever did not make it goes through the careful path
     * (retries with backoff, Range resume, a fresh URL after a 403). */
    for (size_t i = 0; i < n && st == UNI1_OK; i++) {
        if (pf[i].ok)
            continue;
        uni1__log(s, UNI1_LOG_DEBUG, "asset %s: retrying on its own", assets[i].id);
        st = uni1_download_asset_to_dir(s, &assets[i], dir, names[i], overwrite,
                                        paths_out ? paths_out[i] : NULL, path_len);
    }
    free(pf);
    return st;
}
