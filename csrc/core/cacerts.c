/* The CA certificates a client verifies servers with, chosen once when the
 * client is made. A libcurl bundled in a wheel knows only the bundle path of
 * the system it was built on (Debian's, or RHEL's in a manylinux image), so
 * on any other layout every HTTPS request would fail; the known paths are
 * probed here instead. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session.h"

/* The probe order, first readable file wins. Debian's path comes first: on
 * Alpine, Arch and Gentoo it exists too, next to their own. The list is kept
 * short enough for a TLS error message to name every path tried. */
const char *const uni1__ca_files[] = {
    "/etc/ssl/certs/ca-certificates.crt",                /* Debian, Ubuntu, Arch, Gentoo, Alpine */
    "/etc/pki/tls/certs/ca-bundle.crt",                  /* Fedora, RHEL */
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", /* RHEL 7+, CentOS, Amazon Linux */
    "/etc/ssl/ca-bundle.pem",                            /* openSUSE, SLES */
    "/etc/ssl/cert.pem",                                 /* Alpine, macOS, OpenBSD */
    NULL,
};

/* A file with at least one byte: an empty file, a directory or a dangling
 * link holds no certificate. */
static int readable(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    int some = fgetc(f) != EOF;
    fclose(f);
    return some;
}

/* Schannel and Secure Transport verify with the operating system's store;
 * a PEM file would replace it, not add to it. */
static int native_store(void)
{
    const char *tls = curl_version_info(CURLVERSION_NOW)->ssl_version;
    return tls && (strncmp(tls, "Schannel", 8) == 0 || strncmp(tls, "SecureTransport", 15) == 0);
}

#define TRIED_HEAD "no CA bundle found (tried "
#define TRIED_TAIL "); pass ca_bundle or set SSL_CERT_FILE"

int uni1__ca_probe(const char *root, const char *fallback, char **found, char **tried)
{
    *found = *tried = NULL;
    size_t cap = sizeof TRIED_HEAD + sizeof TRIED_TAIL;
    size_t rootlen = root ? strlen(root) : 0;
    for (size_t i = 0; uni1__ca_files[i]; i++)
        cap += rootlen + strlen(uni1__ca_files[i]) + 2;
    cap += fallback ? strlen(fallback) + 2 : 0;
    char *path = malloc(cap), *list = malloc(cap);
    if (!path || !list) {
        free(path);
        free(list);
        return -1;
    }
    strcpy(list, TRIED_HEAD);
    for (size_t i = 0; uni1__ca_files[i] || fallback; i++) {
        const char *p = uni1__ca_files[i];
        if (p)
            snprintf(path, cap, "%s%s", root ? root : "", p);
        else
            snprintf(path, cap, "%s", fallback);
        if (readable(path)) {
            free(list);
            *found = path;
            return 0;
        }
        if (i > 0)
            strcat(list, ", ");
        strcat(list, path);
        if (!p)
            break;
    }
    free(path);
    strcat(list, TRIED_TAIL);
    *tried = list;
    return 0;
}

int uni1__ca_choose(uni1_client *c, const uni1_options *o)
{
    const char *given = o->ca_bundle;
    if (!given || !*given)
        given = getenv("SSL_CERT_FILE");
    if (!given || !*given)
        given = getenv("CURL_CA_BUNDLE");
    if (given && *given) {
        c->ca_bundle = strdup(given);
        return c->ca_bundle ? 0 : -1;
    }
    const char *dir = getenv("SSL_CERT_DIR");
    if (dir && *dir && !(c->ca_path = strdup(dir)))
        return -1;
    if (native_store())
        return 0;
    const char *fallback = o->ca_fallback && *o->ca_fallback ? o->ca_fallback : NULL;
    return uni1__ca_probe(NULL, fallback, &c->ca_bundle, &c->ca_tried);
}

void uni1__ca_apply(const uni1_client *c, CURL *e)
{
    if (c->ca_bundle)
        curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_bundle);
    if (c->ca_path) {
        curl_easy_setopt(e, CURLOPT_CAPATH, c->ca_path);
        /* Without a bundle the directory is the whole store: libcurl's own
         * default file, missing here, would fail the handshake. */
        if (!c->ca_bundle)
            curl_easy_setopt(e, CURLOPT_CAINFO, NULL);
    }
}

const char *uni1__ca_note(const uni1_client *c)
{
    return c->ca_tried ? c->ca_tried : "";
}
