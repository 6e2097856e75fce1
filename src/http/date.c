#include "http/date.h"

#include <string.h>
#include <time.h>

static _Thread_local time_t cached_sec = -1;
static _Thread_local char cached[HTTP_DATE_LEN + 1];

static void put2(char *p, int v)
{
    p[0] = (char)('0' + v / 10 % 10);
    p[1] = (char)('0' + v % 10);
}

const char *http_date_now(void)
{
    /* time() is a vDSO call: cheap enough per response, and it keeps the
     * header exact at second boundaries without a timer. */
    time_t now = time(NULL);
    if (now != cached_sec) {
        static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
        static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
        struct tm tm;
        gmtime_r(&now, &tm);
        /* Fixed-width fields, written by hand: no locale, no truncation. */
        char *p = cached;
        memcpy(p, days[tm.tm_wday], 3);
        memcpy(p + 3, ", ", 2);
        put2(p + 5, tm.tm_mday);
        p[7] = ' ';
        memcpy(p + 8, months[tm.tm_mon], 3);
        p[11] = ' ';
        int year = tm.tm_year + 1900;
        put2(p + 12, year / 100 % 100);
        put2(p + 14, year % 100);
        p[16] = ' ';
        put2(p + 17, tm.tm_hour);
        p[19] = ':';
        put2(p + 20, tm.tm_min);
        p[22] = ':';
        put2(p + 23, tm.tm_sec);
        memcpy(p + 25, " GMT", 4);
        p[HTTP_DATE_LEN] = '\0';
        cached_sec = now;
    }
    return cached;
}
