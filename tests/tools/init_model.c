// init_model.c — writes a seeded, freshly initialised U-Net of a job file's
// architecture (for tests and smoke jobs that need weights but not a trained model).
// usage: init_model JOB.cfg OUT.safetensors [SEED] [--set key=value ...]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/checkpoint.h"
#include "io/config.h"
#include "model/init.h"

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: init_model JOB.cfg OUT.safetensors [SEED] [--set key=value ...]\n");
        return 2;
    }
    const char *sets[32];
    int ns = 0;
    unsigned long seed = 1;
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--set") && i + 1 < argc && ns < 32)
            sets[ns++] = argv[++i];
        else
            seed = strtoul(argv[i], NULL, 10);
    }
    JobConfig jc;
    Error e;
    if (job_config_load(&jc, argv[1], sets, ns, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    UNet *u = unet_create(&jc.model, NULL, &e);
    if (!u) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    unet_init_params(u, seed);
    int rc = unet_save(u, argv[2], NULL, 0, &e);
    if (rc) fprintf(stderr, "%s\n", e.msg);
    unet_free(u);
    return rc ? 1 : 0;
}
