"""What both reconcilers share: the context they are given and its parts."""
