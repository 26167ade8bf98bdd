def main(argv):
    if argv and argv[0] == "hello":
        print("hello")
        return 0
    print("usage: app hello")
    return 2
