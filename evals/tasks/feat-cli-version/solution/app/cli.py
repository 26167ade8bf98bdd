from app.version import __version__


def main(argv):
    if argv and argv[0] == "--version":
        print(f"app {__version__}")
        return 0
    if argv and argv[0] == "hello":
        print("hello")
        return 0
    print("usage: app hello")
    return 2
