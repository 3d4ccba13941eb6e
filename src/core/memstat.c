// memstat.c — see memstat.h.
#include "core/memstat.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

// "Key:   123 kB" -> bytes, when line starts with key
static int kb_field(const char *line, const char *key, long long *out) {
    size_t n = strlen(key);
    if (strncmp(line, key, n) != 0) return 0;
    long long kb = 0;
    if (sscanf(line + n, " %lld", &kb) != 1) return 0;
    *out = kb * 1024;
    return 1;
}

int memstat_read(MemStat *m, const void *region, size_t bytes, Error *e) {
    memset(m, 0, sizeof *m);
    m->peak_rss = m->rss = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return errorf(e, "memory report: cannot read /proc/self/status (Linux only)");
    char line[4096];  // PATH_MAX: a header line with a long file name stays one line
    while (fgets(line, sizeof line, f))
        if (!kb_field(line, "VmHWM:", &m->peak_rss)) kb_field(line, "VmRSS:", &m->rss);
    fclose(f);
    if (m->peak_rss < 0 || m->rss < 0) return errorf(e, "memory report: /proc/self/status has no VmHWM/VmRSS");
    if (!region || !bytes) return 0;
    if (!(f = fopen("/proc/self/smaps", "r"))) return errorf(e, "memory report: cannot read /proc/self/smaps");
    uintptr_t lo = (uintptr_t)region, hi = lo + bytes;
    int in = 0;  // inside a mapping that overlaps [lo, hi)
    while (fgets(line, sizeof line, f)) {
        unsigned long a, b;
        char c;
        // a mapping's header "start-end perms ..." (no field name parses so); its "Key: value" lines follow
        if (sscanf(line, "%lx-%lx %c", &a, &b, &c) == 3) {
            in = (uintptr_t)a < hi && (uintptr_t)b > lo;
            continue;
        }
        if (!in) continue;
        long long v = 0;
        if (kb_field(line, "Rss:", &v)) m->region_rss += v;
        else if (kb_field(line, "Shared_Clean:", &v) || kb_field(line, "Shared_Dirty:", &v)) m->region_shared += v;
    }
    fclose(f);
    return 0;
}

int memstat_reset_peak(void) {
    int fd = open("/proc/self/clear_refs", O_WRONLY);
    if (fd < 0) return -1;
    int rc = write(fd, "5", 1) == 1 ? 0 : -1;
    close(fd);
    return rc;
}
