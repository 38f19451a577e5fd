/* consumer.c: a program built against the INSTALLED libsae (pkg-config and find_package). */
#include <stdio.h>

#include <sae/sae.h>

int main(void)
{
    float W_enc[2 * 3] = {1, 0, 1, 0, 1, -1}, W_dec[3 * 2] = {1, 0, 0, 1, 0.5f, 0.5f};
    sae_dict_config c = SAE_DICT_CONFIG_INIT;
    c.arch = SAE_ARCH_STANDARD, c.d_in = 2, c.d_sae = 3;
    sae_dict_weights w = SAE_DICT_WEIGHTS_INIT;
    w.W_enc = W_enc, w.W_dec = W_dec;
    sae_dict *d = NULL;
    sae_encoder *e = NULL;
    float x[2] = {2, 1}, f[3], xh[2];
    if (sae_version_number() / 100 != SAE_VERSION_NUMBER / 100 ||
        sae_dict_create(&d, &c, &w, NULL) || sae_encoder_create(&e, d, NULL) ||
        sae_encoder_encode(e, 1, x, 2, f, 3, NULL, 0) ||
        sae_encoder_reconstruct(e, 1, x, 2, xh, 2, NULL, 0)) {
        fprintf(stderr, "consumer: %s\n", sae_last_error());
        return 1;
    }
    /* f = relu(x W_enc) = relu([2, 1, 1]); x_hat = f W_dec = [2.5, 1.5] */
    int ok = f[0] == 2 && f[1] == 1 && f[2] == 1 && xh[0] == 2.5f && xh[1] == 1.5f;
    printf("consumer: libsae %s, f = [%g %g %g], x_hat = [%g %g] %s\n", sae_version_string(),
           f[0], f[1], f[2], xh[0], xh[1], ok ? "ok" : "WRONG");
    sae_encoder_free(e);
    sae_dict_free(d);
    return ok ? 0 : 1;
}
