/* The Date header value (RFC 9110 IMF-fixdate), formatted at most once a
 * second per thread. */
#ifndef VIE_HTTP_DATE_H
#define VIE_HTTP_DATE_H

#define HTTP_DATE_LEN 29 /* "Sun, 06 Nov 1994 08:49:37 GMT" */

/* The current date; the pointer stays valid for the thread's life. */
const char *http_date_now(void);

#endif
