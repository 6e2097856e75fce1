/* Test helper: capture what Vie logs to stderr, and search it. Included
 * by the pipeline tests (after cmocka.h). */
#ifndef VIE_TEST_LOG_CAPTURE_H
#define VIE_TEST_LOG_CAPTURE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vie/vie.h"

typedef struct capture {
    int saved;
    FILE *tmp;
} capture;

/* From here on, stderr goes to a temporary file, at debug level. */
static inline void capture_begin(capture *k)
{
    fflush(stderr);
    k->tmp = tmpfile();
    assert_non_null(k->tmp);
    k->saved = dup(STDERR_FILENO);
    assert_true(k->saved >= 0);
    assert_true(dup2(fileno(k->tmp), STDERR_FILENO) >= 0);
    vie_log_set_level(VIE_LOG_DEBUG);
}

/* Everything logged since capture_begin (malloc'd, NUL-terminated). */
static inline char *capture_end(capture *k)
{
    vie_log_set_level(VIE_LOG_OFF);
    fflush(stderr);
    dup2(k->saved, STDERR_FILENO);
    close(k->saved);
    long n = ftell(k->tmp);
    char *s = calloc(1, (size_t)(n > 0 ? n : 0) + 1);
    assert_non_null(s);
    rewind(k->tmp);
    size_t got = n > 0 ? fread(s, 1, (size_t)n, k->tmp) : 0;
    s[got] = '\0';
    fclose(k->tmp);
    return s;
}

/* True when one line of log contains every one of the NULL-terminated
 * needles. */
static inline bool log_has_line(const char *log, ...)
{
    for (const char *line = log; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char *copy = strndup(line, len);
        bool all = copy != NULL;
        va_list ap;
        va_start(ap, log);
        for (const char *needle; all && (needle = va_arg(ap, const char *)) != NULL;)
            all = strstr(copy, needle) != NULL;
        va_end(ap);
        free(copy);
        if (all) return true;
        line = end ? end + 1 : NULL;
    }
    return false;
}

/* vie_app_freeze, with what it logged. */
static inline int freeze_logged(vie_app *app, char **log)
{
    capture k;
    capture_begin(&k);
    int rc = vie_app_freeze(app);
    *log = capture_end(&k);
    return rc;
}

#endif
