/* main.c: the `sae` command-line tool: dispatch to one command per file (cmd_*.c). */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"demo", cmd_demo, "train SAEs on synthetic data and show how well they recover its features"},
    {"info", cmd_info, "describe an SAE file: format, architecture, sizes, conventions"},
    {"encode", cmd_encode, "encode activations from a safetensors file (dense or sparse)"},
    {"convert", cmd_convert, "save an SAE in SAELens or sparsify layout"},
    {"train", cmd_train, "train a standard or TopK SAE on activation files or synthetic data"},
    {"finetune", cmd_finetune, "fine-tune an SAE with sae-icm's orthogonality penalty"},
    {"eval", cmd_eval, "evaluate an SAE on activations: FVU, L0, dead features, densities"},
    {"capture", cmd_capture, "run a llama2.c model on tokens and save activations at hook points"},
    {"evaluate-task", cmd_evaluate_task,
     "judge SAEs against supervised dictionaries on a labelled task (Makelov et al.)"},
    {"generate", cmd_generate, "generate text with a llama2.c model, optionally steered by an SAE"},
    {"coherence", cmd_coherence, "decoder coherence: max, mean |cos|, Welch bound, effective rank"},
    {"circuit", cmd_circuit, "discover and evaluate sparse feature circuits on a llama2.c model"},
    {"version", cmd_version, "print the library version and BLAS kernels"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: sae COMMAND [ARGS]   (sae COMMAND --help for details)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_EXIT_USAGE : 0;
    }
    if (!strcmp(argv[1], "--version"))
        return cmd_version(1, argv + 1);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "sae: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return CLI_EXIT_USAGE;
}
