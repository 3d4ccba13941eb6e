// main.c — the laptop-diff command line: parses the command and options,
// sets up the MPI world and dispatches to the stage. Only rank 0 prints.
#include <mpi.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "comm_mpi.h"
#include "h5par.h"
#include "io/config.h"
#include "io/h5log.h"
#include "kernels/gemm.h"
#include "kernels/runtime.h"
#include "core/stop.h"
#include "train/trainer.h"
#ifdef LD_DEVICE_BACKEND
#include "cuda/backend_cuda.h"
#endif

// The device backend this program links (CMake: the CUDA one in an LD_CUDA
// build, the same code on the CUDA emulator in the tests' laptop-diff-emu), or none.
static const DeviceBackend *device_backend(void) {
#ifdef LD_DEVICE_BACKEND
    return backend_cuda_device();
#else
    return NULL;
#endif
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: laptop-diff <command> TARGET [--set section.key=value ...] [--resume[=auto]] [--allow-changes]\n"
            "\n"
            "commands:\n"
            "  info JOB.cfg|MODEL.safetensors   architecture table, candidate layers, totals\n"
            "  forward MODEL.safetensors|UNET_DIR --inputs IN.h5 --out OUT.h5 [--taps]\n"
            "                                   the U-Net's prediction for IN.h5's /sample, /timestep,\n"
            "                                   /context -> OUT.h5 /out (--taps: also /taps/<name>); one process\n"
            "  train JOB.cfg [--resume]          train the U-Net (data-parallel over the MPI ranks)\n"
            "  sample JOB.cfg                    DDIM samples with classifier-free guidance: PNG grid + HDF5\n"
            "  score JOB.cfg                     score every candidate layer of the teacher (model.weights)\n"
            "  plan JOB.cfg                      removal plan (exact knapsack), additivity report, student_init\n"
            "  distill JOB.cfg [--resume]        retrain the student against the teacher (normalized feature KD)\n"
            "  eval JOB.cfg                      teacher vs student on held-out data, side-by-side samples\n"
            "  run JOB.cfg [--resume]            score -> plan -> distill -> eval in one job\n"
            "  train-classifier JOB.cfg          train the evaluator CNN for eval's alignment and FID (classifier.out)\n"
            "  config-reference                 every job-file key with default and meaning (Markdown)\n"
            "\n"
            "A checkpoint's architecture comes from its own metadata, a diffusers config.json\n"
            "beside it, or its tensor shapes (head counts then from --set model.attention_head_dim).\n"
            "\n"
            "--resume continues from the newest checkpoint that loads (a corrupted one is skipped\n"
            "with a warning); --resume=auto does the same, or starts fresh when there is none.\n"
            "run skips the stages complete in run.h5. A resume refuses a job whose settings that\n"
            "matter changed (it names them) unless --allow-changes is given.\n");
}

// forward: one process (the batch is not split across ranks). Runtime keys
// (threads, device) and model keys come from --set on the defaults.
static int run_forward(const char *model, const char *inputs, const char *out, int taps, const char *const *sets,
                       int n_sets) {
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size != 1) {
        if (rank == 0)
            fprintf(stderr, "laptop-diff: forward runs on one process, not %d ranks: start it without mpirun or "
                            "with -np 1\n", size);
        return 2;
    }
    JobConfig jc;
    Error e = {0};
    char device[512];
    Backend *dev = NULL;  // runtime.device = "cuda": the U-Net runs there
    if (job_config_load(&jc, NULL, sets, n_sets, &e) ||
        runtime_select_device(jc.runtime.device, jc.runtime.precision, jc.runtime.gpu_conv, jc.runtime.gpu_attention,
                              jc.runtime.cpu_gemm, 0,
                              device_backend(), &dev, device, sizeof device, &e)) {
        fprintf(stderr, "laptop-diff: %s\n", e.msg);
        return 1;
    }
    runtime_set_threads(jc.runtime.threads, 1);
    char blas[400];  // on stderr: stdout is forward's report
    if (runtime_blas_coretype_warning(blas, sizeof blas)) fprintf(stderr, "laptop-diff: warning: %s\n", blas);
    if (dev) printf("forward: %s\n", device);
    int rc = forward_run(stdout, model, inputs, out, taps, &jc.model, dev, &e);
    backend_free(dev);
    if (rc) {
        fprintf(stderr, "laptop-diff: %s\n", e.msg);
        return 1;
    }
    return 0;
}

// After a failure every rank knows of (comm_agree): ranks usually fail together
// with the same message, so rank 0 speaks for all, unless it only knows that
// another rank failed; then each rank that failed itself speaks.
static void report(Comm *comm, const Error *e) {
    int r0_knows = comm->rank == 0 && !e->other_rank;
    comm->bcast(comm, &r0_knows, sizeof r0_knows, 0);
    if (r0_knows ? comm->rank == 0 : !e->other_rank) fprintf(stderr, "laptop-diff: %s\n", e->msg);
}

// A stage on every rank: load the job (each rank checks it), pick the device
// (a GPU can fail on one node alone), set threads, run. Every failure is
// agreed, then printed once per distinct cause (report).
static int run_stage(const char *cmd, const char *target, const char *const *sets, int n_sets, int resume) {
    Comm comm = comm_mpi_world();
    JobConfig jc;
    Error e = {0};
    int rc = 0;
    char device[512];
    Backend *dev = NULL;  // the rank's GPU backend (handed to the run context below)
    rc = job_config_load(&jc, target, sets, n_sets, &e) ||
         runtime_select_device(jc.runtime.device, jc.runtime.precision, jc.runtime.gpu_conv, jc.runtime.gpu_attention,
                              jc.runtime.cpu_gemm,
                               comm.local_rank, device_backend(), &dev, device, sizeof device, &e);
    if (comm_agree(&comm, rc, &e)) {
        report(&comm, &e);
        backend_free(dev);
        comm_mpi_free(&comm);
        return 1;
    }
    int threads = runtime_set_threads(jc.runtime.threads, comm.local_size);
    if (comm.rank == 0) {
        printf("laptop-diff %s %s: %d rank%s x %d thread%s, CPU GEMMs on %s\n", cmd, target, comm.size,
               comm.size == 1 ? "" : "s", threads, threads == 1 ? "" : "s", gemm_cpu_library_name());
        int allowed = runtime_allowed_cores();
        if (threads > allowed)  // rank 0 speaks for the usual case: every rank launched alike
            printf("laptop-diff: warning: rank 0 runs %d threads on the %d core%s its launcher bound it to; Open MPI "
                   "binds each rank to one core by default: mpirun --map-by slot:PE=%d (or --bind-to none) gives it "
                   "%d\n", threads, allowed, allowed == 1 ? "" : "s", threads, threads);
        char blas[400];
        if (runtime_blas_coretype_warning(blas, sizeof blas)) printf("laptop-diff: warning: %s\n", blas);
        fflush(stdout);
    }
    if (jc.runtime.device == DEVICE_CUDA) {  // every rank: which GPU it took
        printf("rank %d (node-local rank %d): %s\n", comm.rank, comm.local_rank, device);
        fflush(stdout);
    }
    stop_install_handlers();
    H5Access h5 = h5par_access();
    RunCtx r;
    if (run_ctx_init(&r, &jc, &comm, &h5, &e)) {  // the same check on every rank
        if (comm.rank == 0) fprintf(stderr, "laptop-diff: %s\n", e.msg);
        backend_free(dev);
        comm_mpi_free(&comm);
        return 1;
    }
    r.device = dev;  // freed by run_ctx_free
    r.gpu = device_backend();
    // every command here writes into output.dir: one job at a time
    if (run_ctx_lock(&r, cmd, &e)) {
        report(&comm, &e);
        run_ctx_free(&r);
        comm_mpi_free(&comm);
        return 1;
    }
    if (!strcmp(cmd, "train"))
        rc = train_main(&r, resume, &e);
    else if (!strcmp(cmd, "sample"))
        rc = sample_main(&r, &e);
    else if (!strcmp(cmd, "score"))
        rc = score_main(&r, &e);
    else if (!strcmp(cmd, "plan"))
        rc = plan_main(&r, &e);
    else if (!strcmp(cmd, "distill"))
        rc = distill_main(&r, resume, &e);
    else if (!strcmp(cmd, "eval"))
        rc = eval_main(&r, &e);
    else if (!strcmp(cmd, "train-classifier"))
        rc = train_classifier_main(&r, &e);
    else
        rc = run_main(&r, resume, &e);
    // the stages that hold the teacher end with their memory (run_main reports its score and distill inside)
    if (rc == 0 && (!strcmp(cmd, "score") || !strcmp(cmd, "distill") || !strcmp(cmd, "run")))
        rc = run_report_memory(&r, cmd, &e);
    run_ctx_free(&r);
    if (rc < 0) {
        report(&comm, &e);
        rc = 1;
    } else if (rc == 1) {
        rc = 3;  // stopped by a signal after checkpointing: distinct for requeue scripts
    }
    comm_mpi_free(&comm);
    return rc;
}

int main(int argc, char **argv) {
    // Before MPI_Init: a process image that MPI has not touched yet can be replaced.
    runtime_fix_blas_kernels(argv);
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
    int resume = 0, allow_changes = 0, taps = 0;
    const char *inputs = NULL, *out = NULL;
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
        } else if (!strcmp(argv[i], "--resume")) {
            resume = (resume & ~TRAINER_RESUME_MODE) | TRAINER_RESUME_YES;
        } else if (!strcmp(argv[i], "--resume=auto")) {
            resume = (resume & ~TRAINER_RESUME_MODE) | TRAINER_RESUME_AUTO;
        } else if (!strcmp(argv[i], "--allow-changes")) {
            allow_changes = 1;
        } else if (!strcmp(argv[i], "--inputs") || !strcmp(argv[i], "--out")) {
            if (i + 1 >= argc) {
                if (rank == 0) fprintf(stderr, "laptop-diff: %s needs a file name\n", argv[i]);
                rc = 2;
                break;
            }
            *(argv[i][2] == 'i' ? &inputs : &out) = argv[i + 1];
            i++;
        } else if (!strcmp(argv[i], "--taps")) {
            taps = 1;
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
    if (!rc && allow_changes) {
        if (resume & TRAINER_RESUME_MODE) {
            resume |= TRAINER_ALLOW_CHANGES;
        } else {
            if (rank == 0) fprintf(stderr, "laptop-diff: --allow-changes only goes with --resume or --resume=auto\n");
            rc = 2;
        }
    }
    if (!rc && strcmp(cmd, "forward") && (inputs || out || taps)) {
        if (rank == 0) fprintf(stderr, "laptop-diff: --inputs, --out and --taps only go with forward\n");
        rc = 2;
    }
    if (!rc && !strcmp(cmd, "forward") && (!inputs || !out)) {
        if (rank == 0) fprintf(stderr, "laptop-diff: forward needs --inputs IN.h5 and --out OUT.h5\n");
        rc = 2;
    }
    if (!rc && !target) {
        if (rank == 0) fprintf(stderr, "laptop-diff: %s needs a JOB.cfg or MODEL.safetensors\n", cmd);
        rc = 2;
    }
    if (!rc) {
        Error e = {0};
        if (!strcmp(cmd, "info")) {
            if (rank == 0 && info_run(stdout, target, sets, n_sets, &e)) {
                fprintf(stderr, "laptop-diff: %s\n", e.msg);
                rc = 1;
            }
        } else if (!strcmp(cmd, "forward")) {
            rc = run_forward(target, inputs, out, taps, sets, n_sets);
        } else if (!strcmp(cmd, "train") || !strcmp(cmd, "sample") || !strcmp(cmd, "score") || !strcmp(cmd, "plan") ||
                   !strcmp(cmd, "distill") || !strcmp(cmd, "eval") || !strcmp(cmd, "run") ||
                   !strcmp(cmd, "train-classifier")) {
            rc = run_stage(cmd, target, sets, n_sets, resume);
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
    if (h5log_unclosable()) {
        // a run file that could not be written (full disk) is still open, and HDF5's
        // shutdown in MPI_Finalize would crash on it (src/io/h5log.h): end here, error reported
        fflush(stdout);
        fflush(stderr);
        _exit(rc ? rc : 1);
    }
    MPI_Finalize();
    return rc;
}
