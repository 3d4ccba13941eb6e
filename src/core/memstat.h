// memstat.h — this process's memory as Linux reports it (/proc/self): the
// peak resident set (VmHWM) and how much of a given buffer's pages are
// resident and shared with another process (for a node-shared teacher).
#ifndef LD_MEMSTAT_H
#define LD_MEMSTAT_H
#include <stddef.h>

#include "core/common.h"

typedef struct {
    long long peak_rss;  // VmHWM: the peak resident set since start or the last memstat_reset_peak, bytes
    long long rss;       // VmRSS now, bytes
    // Of the mappings that overlap the region: resident bytes, and the part of
    // them also mapped by another process (smaps Shared_Clean + Shared_Dirty).
    // 0 without a region.
    long long region_rss, region_shared;
} MemStat;

// Reads /proc/self/status and, when region is not NULL, /proc/self/smaps.
// -1 + e where they cannot be read (not Linux).
int memstat_read(MemStat *m, const void *region, size_t bytes, Error *e);

// Sets VmHWM back to the current RSS (writes "5" to /proc/self/clear_refs), so
// the next peak is the peak of what follows. 0, or -1 where the kernel refuses.
int memstat_reset_peak(void);
#endif
