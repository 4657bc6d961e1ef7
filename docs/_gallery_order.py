"""Order of the example gallery: the basic models first (mixtures, HMMs, then state-space, topic and
regression models), the neural ones last.

Examples not named here (new ones) sort by file name between the basic and the neural
groups; any file whose name mentions ``neural`` or ``deep`` joins the neural group.
"""

FIRST = [
    "plot_old_faithful_gmm.py",
    "plot_mixture_any_family.py",
    "plot_old_faithful_hmm.py",
    "plot_earthquakes_poisson_hmm.py",
    "plot_vb_gibbs_nuts_earthquakes.py",
    "plot_shakespeare_categorical_hmm.py",
    "plot_streaming_shakespeare.py",
    "plot_sunspots_lds.py",
    "plot_sunspots_arhmm.py",
    "plot_lda_shakespeare.py",
    "plot_glm_earthquakes.py",
    "plot_save_load_and_cli.py",
    "plot_distributed_em.py",
]
LAST = [
    "plot_neural_hmm_sunspots.py",
    "plot_deep_ssm_old_faithful.py",
    "plot_neural_mambaout_digits.py",
    "plot_neural_vit_causal_digits.py",
    "plot_neural_selective_copying.py",
    "plot_neural_induction_heads.py",
    "plot_neural_char_lm.py",
]


class ExampleOrder:
    """Sort key for sphinx-gallery's ``within_subsection_order``."""

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __call__(self, filename):
        if filename in FIRST:
            return (0, FIRST.index(filename), filename)
        if filename in LAST:
            return (2, LAST.index(filename), filename)
        neural = "neural" in filename or "deep" in filename
        return (2 if neural else 1, -1, filename)

    def __repr__(self):  # sphinx-gallery caches the configuration by its repr
        return "ExampleOrder"
