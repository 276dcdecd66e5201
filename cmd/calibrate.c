/*
 * sparsify-torch calibrate — the calibration pass of Wanda scores
 * (bridge/calibrate.h), run by `sparsify prune --score wanda` (cmd/launch.c)
 * in the libtorch helper: it writes the activation norms as a small torch
 * checkpoint to a descriptor the caller passes (--out-fd; the caller's
 * memory-only file, so nothing is ever left on disk) or to a file (-o,
 * under the usual output policy). Not a command of the `sparsify` binary.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "cmd/torch_cli.h"

#ifdef SP_HAVE_TORCH
#include "bridge/calibrate.h"
#endif

static const char usage_text[] =
    "usage: sparsify-torch calibrate MODEL --calibration FILE (--out-fd FD | -o NORMS.pt)\n"
    "                                [--label-column C] [--calibration-samples N]\n"
    "                                [--threads T] [--force]\n"
    "\n"
    "Run the TorchScript MODEL forward on the first N rows of FILE (CSV or a\n"
    ".pt / .safetensors file with 'inputs', read as 'sparsify run' reads it) and\n"
    "write the L2 norm of every input feature of every Linear product and\n"
    "convolution, by weight name, as a torch checkpoint. 'sparsify prune\n"
    "--score wanda --calibration FILE' runs this itself.\n"
    "\n"
    "  --calibration FILE       calibration data\n"
    "  --label-column C         CSV column to leave out (a label); default: none\n"
    "  --calibration-samples N  rows to use, the first ones (default 128)\n"
    "  --threads T              CPU threads for libtorch\n"
    "  --out-fd FD              write the norms to this open descriptor\n"
    "  -o, --output NORMS.pt    ... or to this file\n"
    "  --force                  replace an existing -o file\n"
    "  -h, --help               this text\n"
    "\n"
    "exit codes: 0 ok, 1 failed, 2 usage or bad input\n";

#ifndef SP_HAVE_TORCH

int cmd_calibrate(int argc, char **argv)
{
    return torch_missing(argc, argv, usage_text, "calibrate");
}

#else

enum { OPT_CALIB = 256, OPT_LABEL, OPT_SAMPLES, OPT_THREADS, OPT_FD, OPT_FORCE };

int cmd_calibrate(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"calibration", required_argument, NULL, OPT_CALIB},
        {"label-column", required_argument, NULL, OPT_LABEL},
        {"calibration-samples", required_argument, NULL, OPT_SAMPLES},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"out-fd", required_argument, NULL, OPT_FD},
        {"output", required_argument, NULL, 'o'},
        {"force", no_argument, NULL, OPT_FORCE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    sp_calib_opts o;
    sp_calib_opts_init(&o);
    const char *out = NULL;
    long fd = -1, v;
    bool force = false;
    int c, bad = EXIT_USAGE;
    optind = 1;
    while ((c = cli_getopt(argc, argv, "o:h", longopts, "calibrate", &bad)) != -1) {
        switch (c) {
        case OPT_CALIB: o.data = optarg; break;
        case OPT_LABEL: o.label_column = optarg; break;
        case OPT_SAMPLES:
            if (!cli_parse_long("--calibration-samples", optarg, &v))
                return EXIT_USAGE;
            if (v < 1)
                return cli_usage_error("calibrate", "--calibration-samples must be at least 1");
            o.samples = v;
            break;
        case OPT_THREADS:
            if (!cli_parse_long("--threads", optarg, &v))
                return EXIT_USAGE;
            if (v < 1 || v > 4096)
                return cli_usage_error("calibrate", "--threads must be in [1, 4096]");
            o.threads = (int)v;
            break;
        case OPT_FD:
            if (!cli_parse_long("--out-fd", optarg, &fd))
                return EXIT_USAGE;
            if (fd < 0 || fd > 1 << 20)
                return cli_usage_error("calibrate", "--out-fd must be an open descriptor");
            break;
        case 'o': out = optarg; break;
        case OPT_FORCE: force = true; break;
        case 'h': fputs(usage_text, stdout); return EXIT_OK;
        default: return bad;
        }
    }
    if (optind != argc - 1)
        return cli_usage_error("calibrate", optind >= argc ? "missing model"
                                                           : "expected exactly one model");
    o.model = argv[optind];
    if (!o.data)
        return cli_usage_error("calibrate", "missing --calibration FILE");
    if ((fd >= 0) == (out != NULL))
        return cli_usage_error("calibrate", "give one of --out-fd and -o");
    int rc = out ? cli_output_check(o.model, out, (force ? CLI_OUT_FORCE : 0) |
                                                      CLI_OUT_NEVER_IN_PLACE)
                 : 0;
    if (rc)
        return rc;
    sp_error err = {0};
    sp_calib_result r;
    if (sp_calibrate(&o, &r, &err) || sp_calib_save(&r, out, (int)fd, &err))
        rc = cli_fail(&err);
    sp_calib_result_release(&r);
    return rc;
}

#endif
