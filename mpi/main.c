// main.c — the laptop-diff command line: parses the command and options,
// sets up the MPI world and dispatches to the stage. Only rank 0 prints.
#include <mpi.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "info.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: laptop-diff <command> TARGET [--set section.key=value ...]\n"
            "\n"
            "commands:\n"
            "  info JOB.cfg|MODEL.safetensors   architecture table, candidate layers, totals\n"
            "  config-reference                 every job-file key with default and meaning (Markdown)\n"
            "\n"
            "A checkpoint's architecture comes from its own metadata, a diffusers config.json\n"
            "beside it, or its tensor shapes (head counts then from --set model.attention_head_dim).\n");
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    int rc = 0;
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        if (rank == 0) usage(argc < 2 ? stderr : stdout);
        rc = argc < 2 ? 2 : 0;
        goto done;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "config-reference")) {
        if (rank == 0) job_config_print_reference(stdout);
        goto done;
    }
    // TARGET then options
    const char *target = NULL;
    const char **sets = calloc((size_t)argc, sizeof *sets);
    int n_sets = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--set")) {
            if (i + 1 >= argc) {
                if (rank == 0) fprintf(stderr, "laptop-diff: --set needs section.key=value\n");
                rc = 2;
                break;
            }
            sets[n_sets++] = argv[++i];
        } else if (!strncmp(argv[i], "--set=", 6)) {
            sets[n_sets++] = argv[i] + 6;
        } else if (argv[i][0] == '-' && argv[i][1] == '-') {
            if (rank == 0) fprintf(stderr, "laptop-diff: unknown option %s\n", argv[i]);
            rc = 2;
            break;
        } else if (!target) {
            target = argv[i];
        } else {
            if (rank == 0) fprintf(stderr, "laptop-diff: unexpected argument %s\n", argv[i]);
            rc = 2;
            break;
        }
    }
    if (!rc && !target) {
        if (rank == 0) fprintf(stderr, "laptop-diff: %s needs a JOB.cfg or MODEL.safetensors\n", cmd);
        rc = 2;
    }
    if (!rc) {
        Error e = {{0}};
        if (!strcmp(cmd, "info")) {
            if (rank == 0 && info_run(stdout, target, sets, n_sets, &e)) {
                fprintf(stderr, "laptop-diff: %s\n", e.msg);
                rc = 1;
            }
        } else {
            if (rank == 0) {
                fprintf(stderr, "laptop-diff: unknown command \"%s\"\n", cmd);
                usage(stderr);
            }
            rc = 2;
        }
    }
    free(sets);
done:
    MPI_Finalize();
    return rc;
}
