/* The CA bundle probe (cacerts.c): the order of the known paths, what counts
 * as a bundle, certifi's path as the last candidate, the paths tried named
 * when none is found, and the settings and variables that come before it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "session.h"

static char root[64];

static void path_of(char *buf, size_t n, const char *p)
{
    snprintf(buf, n, "%s%s", root, p);
}

static void mkdirs(const char *file)
{
    char d[512];
    snprintf(d, sizeof d, "%s", file);
    for (char *s = strchr(d + 1, '/'); s; s = strchr(s + 1, '/')) {
        *s = 0;
        mkdir(d, 0700);
        *s = '/';
    }
}

static void put(const char *p, const char *text)
{
    char f[512];
    path_of(f, sizeof f, p);
    mkdirs(f);
    FILE *fp = fopen(f, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static int setup(void **state)
{
    (void)state;
    snprintf(root, sizeof root, "/tmp/uni1-ca-XXXXXX");
    assert_non_null(mkdtemp(root));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    return system(cmd) == 0 ? 0 : -1;
}

static size_t n_files(void)
{
    size_t n = 0;
    while (uni1__ca_files[n])
        n++;
    return n;
}

static void test_each_path_in_order(void **state)
{
    (void)state;
    size_t n = n_files();
    assert_true(n >= 5);
    assert_string_equal(uni1__ca_files[0], "/etc/ssl/certs/ca-certificates.crt");
    for (size_t i = 0; i < n; i++)
        put(uni1__ca_files[i], "PEM");
    for (size_t i = 0; i < n; i++) {
        char *found, *tried, want[512];
        assert_int_equal(uni1__ca_probe(root, NULL, &found, &tried), 0);
        path_of(want, sizeof want, uni1__ca_files[i]);
        assert_non_null(found);
        assert_string_equal(found, want);
        assert_null(tried);
        free(found);
        unlink(want); /* the next one is found next */
    }
}

static void test_none_found_names_every_path_tried(void **state)
{
    (void)state;
    char *found, *tried;
    assert_int_equal(uni1__ca_probe(root, "/nowhere/certifi/cacert.pem", &found, &tried), 0);
    assert_null(found);
    assert_non_null(tried);
    char want[2048] = "no CA bundle found (tried ";
    for (size_t i = 0; uni1__ca_files[i]; i++) {
        char p[512];
        path_of(p, sizeof p, uni1__ca_files[i]);
        strcat(want, p);
        strcat(want, ", ");
    }
    strcat(want, "/nowhere/certifi/cacert.pem); pass ca_bundle or set SSL_CERT_FILE");
    assert_string_equal(tried, want);
    free(tried);
}

static void test_fallback_is_the_last_candidate(void **state)
{
    (void)state;
    put("/certifi/cacert.pem", "PEM");
    char fallback[512], *found, *tried;
    path_of(fallback, sizeof fallback, "/certifi/cacert.pem");
    assert_int_equal(uni1__ca_probe(root, fallback, &found, &tried), 0);
    assert_string_equal(found, fallback);
    free(found);
    /* A system bundle comes first. */
    put("/etc/ssl/cert.pem", "PEM");
    assert_int_equal(uni1__ca_probe(root, fallback, &found, &tried), 0);
    char want[512];
    path_of(want, sizeof want, "/etc/ssl/cert.pem");
    assert_string_equal(found, want);
    free(found);
}

static void test_empty_files_directories_and_dangling_links_are_skipped(void **state)
{
    (void)state;
    char p[512], target[512];
    put("/etc/ssl/certs/ca-certificates.crt", ""); /* empty */
    path_of(p, sizeof p, "/etc/pki/tls/certs/ca-bundle.crt");
    mkdirs(p);
    assert_int_equal(mkdir(p, 0700), 0); /* a directory */
    path_of(p, sizeof p, "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem");
    mkdirs(p);
    path_of(target, sizeof target, "/gone.pem");
    assert_int_equal(symlink(target, p), 0); /* dangling */
    put("/etc/ssl/ca-bundle.pem", "PEM");
    char *found, *tried, want[512];
    assert_int_equal(uni1__ca_probe(root, NULL, &found, &tried), 0);
    path_of(want, sizeof want, "/etc/ssl/ca-bundle.pem");
    assert_non_null(found);
    assert_string_equal(found, want);
    free(found);
}

static uni1_client *client(const char *ca_bundle, const char *fallback)
{
    uni1_options o;
    uni1_options_init(&o);
    o.bearer_token = "token";
    o.base_url = "http://127.0.0.1:9";
    o.ca_bundle = ca_bundle;
    o.ca_fallback = fallback;
    char err[256];
    uni1_client *c = uni1_client_new(&o, err, sizeof err);
    assert_non_null(c);
    return c;
}

static void test_given_bundle_and_variables_come_first(void **state)
{
    (void)state;
    unsetenv("SSL_CERT_FILE");
    unsetenv("CURL_CA_BUNDLE");
    unsetenv("SSL_CERT_DIR");
    setenv("CURL_CA_BUNDLE", "/from/curl_ca_bundle.pem", 1);
    uni1_client *c = client(NULL, NULL);
    assert_string_equal(c->ca_bundle, "/from/curl_ca_bundle.pem");
    assert_null(c->ca_tried);
    uni1_client_free(c);
    setenv("SSL_CERT_FILE", "/from/ssl_cert_file.pem", 1);
    c = client(NULL, NULL);
    assert_string_equal(c->ca_bundle, "/from/ssl_cert_file.pem");
    uni1_client_free(c);
    c = client("/given.pem", NULL);
    assert_string_equal(c->ca_bundle, "/given.pem");
    assert_null(c->ca_path);
    uni1_client_free(c);
    unsetenv("SSL_CERT_FILE");
    unsetenv("CURL_CA_BUNDLE");
    /* SSL_CERT_DIR adds a directory; the files are still probed. */
    setenv("SSL_CERT_DIR", "/from/ssl_cert_dir", 1);
    char fallback[512];
    put("/certifi/cacert.pem", "PEM");
    path_of(fallback, sizeof fallback, "/certifi/cacert.pem");
    c = client(NULL, fallback);
    assert_string_equal(c->ca_path, "/from/ssl_cert_dir");
    assert_non_null(c->ca_bundle); /* this machine's bundle, or the fallback */
    uni1_client_free(c);
    unsetenv("SSL_CERT_DIR");
}

static void test_control_characters_in_the_fallback_are_refused(void **state)
{
    (void)state;
    uni1_options o;
    uni1_options_init(&o);
    o.bearer_token = "token";
    o.ca_fallback = "/x\n.pem";
    char err[256] = "";
    uni1_client *c = NULL;
    assert_int_equal(uni1_client_create(&o, &c, err, sizeof err), UNI1_ERR_CONFIG);
    assert_null(c);
    assert_string_equal(err, "ca_fallback contains control characters");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_each_path_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_none_found_names_every_path_tried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fallback_is_the_last_candidate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_files_directories_and_dangling_links_are_skipped,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_given_bundle_and_variables_come_first, setup,
                                        teardown),
        cmocka_unit_test(test_control_characters_in_the_fallback_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
