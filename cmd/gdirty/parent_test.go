package main

import "testing"

func TestIsGunicornMaster(t *testing.T) {
	cases := []struct {
		argv []string
		want bool
	}{
		{[]string{"/venv/bin/python", "-m", "gunicorn", "-c", "g.conf.py", "app:app"}, true},
		{[]string{"python3", "-u", "-W", "ignore", "-m", "gunicorn", "app:app"}, true},
		{[]string{"python3.11", "-mgunicorn", "app:app"}, true},
		{[]string{"/venv/bin/python", "/venv/bin/gunicorn", "app:app"}, true},
		{[]string{"/venv/bin/gunicorn", "-c", "g.conf.py", "app:app"}, true},
		{[]string{"gunicorn: master [myapp]"}, true},
		// "gunicorn" only in a path or an argument
		{[]string{"/w/.venv-gunicorn-25.1.0/bin/python", "-m", "pytest", "tests/"}, false},
		{[]string{"/srv/gunicorn-app/bin/python", "serve.py", "gunicorn"}, false},
		{[]string{"python", "-c", "import gunicorn", "gunicorn"}, false},
		{[]string{"python", "-m", "pytest", "-k", "gunicorn"}, false},
		{[]string{"bash", "-c", "gunicorn app:app"}, false},
		// gdirty's own one-command mode is not a gunicorn master
		{[]string{"/w/bin/gdirty", "--config", "g.conf.py", "--", "gunicorn", "app:app"}, false},
		{nil, false},
	}
	for _, c := range cases {
		if got := isGunicornMaster(c.argv); got != c.want {
			t.Errorf("isGunicornMaster(%q) = %v, want %v", c.argv, got, c.want)
		}
	}
}
