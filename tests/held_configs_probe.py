"""`python tests/held_configs_probe.py <initlab args>`: the `initlab` command, which also prints, when a
cluster launcher submits its groups, how many job configs the submitting process holds then:
`held: <job configs> of <jobs>, kept by the loader <checked>, tracked <derived>`."""

import sys

import initlab.sweep.cluster as cluster

submit = cluster._submit


def _submit(launcher, sweep, plan, returns):
    jobs = [job for group in plan for job in group]
    loader = launcher.hydra_context.config_loader
    print(f"held: {sum(job.config is not None for job in jobs)} of {len(jobs)}, kept by the loader "
          f"{len(loader.checked)}, tracked {len(loader.derived)}", flush=True)
    return submit(launcher, sweep, plan, returns)


cluster._submit = _submit

if __name__ == "__main__":
    from initlab.cli import main

    sys.argv = ["initlab", *sys.argv[1:]]
    main()
