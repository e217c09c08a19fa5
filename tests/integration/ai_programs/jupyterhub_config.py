# JupyterHub config of the AI checks' integration test (values come from the environment).
# ProfileSpawner is a STAND-IN for KubeSpawner's profile_list: it takes the same REST
# user_options ({"profile": "<slug>"}) and maps each slug to a local command instead of an
# image. Profile "broken" names a program that does not exist, so its spawn fails for real.
import os

from jupyterhub.spawner import SimpleLocalProcessSpawner

c = get_config()  # noqa: F821 (given by JupyterHub when it loads this file)

WORK = os.environ["BPV_HUB_DIR"]
SINGLEUSER = os.environ["BPV_SINGLEUSER"]

PROFILES = {
    "minimal": [SINGLEUSER, "--allow-root"],
    "datascience": [SINGLEUSER, "--allow-root"],
    "broken": ["/nonexistent/bin/jupyterhub-singleuser"],
}


class ProfileSpawner(SimpleLocalProcessSpawner):
    async def start(self):
        profile = self.user_options.get("profile", "minimal")
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
        self.cmd = PROFILES[profile]
        self.args = []
        return await super().start()


c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = int(os.environ["BPV_HUB_PORT"])
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = int(os.environ["BPV_HUB_API_PORT"])
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{os.environ['BPV_PROXY_API_PORT']}"
c.ConfigurableHTTPProxy.command = ["configurable-http-proxy"]
c.JupyterHub.db_url = f"sqlite:///{WORK}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = f"{WORK}/cookie_secret"
c.JupyterHub.pid_file = f"{WORK}/jupyterhub.pid"
c.JupyterHub.allow_named_servers = True
c.JupyterHub.spawner_class = ProfileSpawner
c.SimpleLocalProcessSpawner.home_dir_template = f"{WORK}/home/{{username}}"
c.Spawner.start_timeout = 90
c.Spawner.http_timeout = 90
c.JupyterHub.authenticator_class = "dummy"
c.JupyterHub.services = [{"name": "validate", "api_token": os.environ["BPV_HUB_TOKEN"]}]
c.JupyterHub.load_roles = [
    {
        "name": "validate",
        "scopes": ["admin:users", "admin:servers", "access:servers", "read:users"],
        "services": ["validate"],
    }
]
c.Authenticator.allow_all = True
